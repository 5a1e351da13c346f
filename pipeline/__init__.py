"""Why does a resistant line escape a PI3K/AKT/mTOR inhibitor? Fit a feedback-network ODE model to western blots.

The Python API (`pipeline.api`, README "Python API") is re-exported here: `pipeline.load_config`,
`pipeline.load_dataset`, `pipeline.fit_map`, `pipeline.fit_posterior`, ... (`dir(pipeline)` lists them).
They are imported on first use, so `import pipeline` is quick and changes nothing: it does not import JAX.
The first use of the API, or importing a module that builds or solves a model, turns on float64 in JAX and
sets the default of EQX_ON_ERROR to `nan`, for the whole process: `pipeline.runtime` says why.
"""

__version__ = "0.1.0"

__all__ = ["InputError", "Fit", "load_config", "load_dataset", "read_dataset", "simulate", "build_model",
           "fit_map", "fit_posterior", "read_fit", "summarise", "predict", "design", "report", "compare"]


def __getattr__(name: str):
    if name in __all__:
        from pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
