"""The Python API: each stage of the pipeline as a function that takes and returns the objects its files hold
(an xarray Dataset for data.nc, simulation.nc and predictions.nc, an ArviZ InferenceData for posterior.nc,
pandas DataFrames for the CSV tables, dicts for map.json and diagnostics.json), for notebooks and scripts.
The CLI's commands call these same functions and write what they return (`pipeline.outputs.files.write_all`),
so a stage gives the same result by hand, under Snakemake and from Python. Every returned object carries its
provenance (`pipeline.outputs.provenance`: version, git commit, config, seed, time, command).

Arguments, alike in every function:
- `config`: a YAML file or a dict of config keys, validated with its defaults filled (`load_config`); for a
  model variant, `load_config(path, variant="name")` first;
- `data`: the ingested blots (the Dataset `load_dataset` returns), a dataset folder, or a data.nc file; None:
  the config's `dataset`. A PEtab config (`petab:`) reads its problem itself and takes no data;
- `posterior`: a `Fit`, an InferenceData, or a posterior.nc file;
- `log`: where progress lines go (the `pipeline` logger by default, silent unless logging is configured;
  `log=print` to see them).

Bad input raises `pipeline.InputError` carrying every problem found (each with file, key or row, and fix).
Importing this module turns on float64 in JAX and sets EQX_ON_ERROR's default: see `pipeline.runtime`.
The heavy modules (ArviZ, the model, the sampler) are imported by the functions that need them.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pipeline import runtime
from pipeline.outputs import provenance
from pipeline.problems import InputError, Problem

runtime.configure()

if TYPE_CHECKING:
    import arviz as az
    import pandas as pd
    import xarray as xr

_LOG = logging.getLogger("pipeline").info
_Log = Callable[[str], None]


# ---- inputs ------------------------------------------------------------------------------------------
def load_config(source, variant: str = "base") -> dict:
    """The config with its defaults filled (a YAML file, or a dict of the same keys, left unchanged), or, with
    `variant`, that model variant of its `variants` list. Raises InputError with every problem."""
    from pipeline import config

    return config.variant(config.load(source), variant)


def load_dataset(source) -> xr.Dataset:
    """A blot dataset folder (format v1, data/README.md) validated and ingested: the Dataset data.nc holds.
    Every error is in the InputError raised; problems that are only warnings are issued as Python warnings.
    `source` may also be a `pipeline.blots.dataset.BlotDataset` already validated (the CLI prints its warnings)."""
    from pipeline.blots import dataset, ingest

    data = source if isinstance(source, dataset.BlotDataset) else dataset.load(source)
    if data is not source:
        for problem in data.warnings:
            warnings.warn(str(problem), stacklevel=2)
    return provenance.stamp(ingest.to_xarray(data), provenance.info(call="load_dataset"))


def read_dataset(path) -> xr.Dataset:
    """An ingested dataset back from its NetCDF file (data.nc)."""
    from pipeline.blots import ingest

    return ingest.read(_existing(path, "run the ingest stage first (snakemake, or python -m pipeline ingest)"))


# ---- model, fit ----------------------------------------------------------------------------------------
def simulate(config, data=None) -> xr.Dataset:
    """The simulate stage: trajectories of the dataset's conditions (observables and states) with the config's
    model variant (`model`, `solver`, `simulate` keys); simulation.nc. Failed solves: `ok` False."""
    from pipeline.model import trajectories

    cfg = load_config(config)
    return provenance.stamp(trajectories.run(cfg, _data(cfg, data)), provenance.info(cfg, "simulate"))


def build_model(config, data=None):
    """The posterior the fit stages work on: a `pipeline.fit.BlotModel` (config x blots) or, for a `petab:`
    config, a `pipeline.petab.fit.PetabModel`; both have the interface of `pipeline.inference.engine`."""
    cfg = load_config(config)
    if _petab(cfg):
        from pipeline.petab import fit as petabfit

        return petabfit.model(cfg)
    from pipeline import fit

    return fit.model(cfg, _data(cfg, data))


def fit_map(config, data=None, *, log: _Log = _LOG) -> dict:
    """The fit_map stage: multi-start MAP fits (`map:`), the content of map.json. `fits` is empty when every
    start failed."""
    cfg = load_config(config)
    if _petab(cfg):
        from pipeline.petab import fit as petabfit

        result = petabfit.run_map(cfg, log=log)
    else:
        from pipeline import fit

        result = fit.run_map(cfg, _data(cfg, data), log=log)
    return {**result, "provenance": provenance.info(cfg, "fit_map")}


@dataclass
class Fit:
    """The fit stage's outputs: `posterior` (posterior.nc), `table` (shifts.csv of a blot analysis, or
    parameters.csv of a PEtab problem) and `diagnostics` (diagnostics.json)."""

    posterior: az.InferenceData
    table: pd.DataFrame
    diagnostics: dict = field(default_factory=dict)

    @property
    def petab(self) -> bool:
        return "petab_problem" in self.posterior.posterior.attrs

    @property
    def table_name(self) -> str:
        return "parameters.csv" if self.petab else "shifts.csv"

    @property
    def provenance(self) -> dict:
        """Version, git commit, config, seed, time and command of the fit (empty for an older posterior.nc)."""
        return provenance.of(self.posterior.posterior.attrs)

    def save(self, folder=None, *, posterior=None, table=None, diagnostics=None, plot=None) -> list[Path]:
        """Write the outputs all or none, each atomically (as the fit stage does), and return their paths: into
        `folder` under the workflow's names (posterior.nc, shifts.csv or parameters.csv, diagnostics.json, and
        for a PEtab problem predictive.png, its posterior predictive against the data), or to the paths given
        (a path left out without a folder: not written; `plot`: only for a PEtab problem)."""
        from pipeline.outputs import files

        if folder is not None:
            folder = Path(folder)
            posterior = posterior or folder / "posterior.nc"
            table = table or folder / self.table_name
            diagnostics = diagnostics or folder / "diagnostics.json"
            plot = plot or (folder / "predictive.png" if self.petab else None)
        figure = None
        if plot is not None and self.petab:
            from pipeline.petab import fit as petabfit

            figure = petabfit.plot_predictive(self.posterior)
        outputs = {posterior: self.posterior, table: self.table, diagnostics: self.diagnostics}
        if figure is not None:
            outputs[plot] = figure
        try:
            return files.write_all(outputs)
        finally:
            if figure is not None:
                import matplotlib.pyplot as plt

                plt.close(figure)


def fit_posterior(config, data=None, map_result=None, *, checkpoint=None, workers: int | None = None,
                  log: _Log = _LOG) -> Fit:
    """The fit stage: the posterior (`sampler:`) started from the best MAP fits. `map_result`: fit_map's dict,
    or a map.json file; None: fit_map runs first. `checkpoint`: passed on to the sampler (where it supports it).
    `workers`: the most chain worker processes (default: one per core)."""
    cfg = load_config(config)
    if map_result is None:
        map_result = fit_map(cfg, data, log=log)
    elif not isinstance(map_result, dict):
        map_result = json.loads(_existing(map_result, "run fit-map first").read_text(encoding="utf-8"))
    extra = {k: x for k, x in (("checkpoint", checkpoint), ("workers", workers)) if x is not None}
    if _petab(cfg):
        from pipeline.petab import fit as petabfit

        idata, diag = petabfit.run_posterior(cfg, map_result, log=log, **extra)
        table = petabfit.summary_table(idata)
    else:
        from pipeline import fit

        idata, table, diag = fit.run_posterior(cfg, _data(cfg, data), map_result, log=log, **extra)
    record = provenance.info(cfg, "fit_posterior")
    return Fit(provenance.stamp(idata, record), table, {**diag, "provenance": record})


def read_fit(folder) -> Fit:
    """A fit stage's outputs back from its folder (posterior.nc, shifts.csv or parameters.csv, diagnostics.json)."""
    import arviz as az
    import pandas as pd

    from pipeline.outputs import report

    folder = Path(folder)
    idata = az.from_netcdf(_existing(folder / "posterior.nc", "run the fit first (snakemake, or make demo)"))
    paths = report.inputs(folder, "petab_problem" in idata.posterior.attrs)
    return Fit(idata, pd.read_csv(paths["table"]), json.loads(paths["diagnostics"].read_text(encoding="utf-8")))


# ---- after the fit -------------------------------------------------------------------------------------
def summarise(posterior, threshold_log2: float = 1.0) -> pd.DataFrame:
    """The fit's table again, without refitting: for a blot fit shifts.csv at another `threshold_log2`
    (prob_shift = P(|log2 FC| > threshold)); for a PEtab problem parameters.csv (the threshold unused)."""
    idata = _posterior(posterior)
    if "petab_problem" in idata.posterior.attrs:
        from pipeline.petab import fit as petabfit

        return petabfit.summary_table(idata)
    from pipeline import fit

    return fit.shift_table(idata, threshold_log2)


def predict(config, data, posterior, *, log: _Log = _LOG):
    """The predict stage (`predict:`): (the predictions.nc Dataset: every draw's read-outs under the candidate
    treatments, per line; the reversal.csv table: per resistant line, how likely each treatment reverses it)."""
    from pipeline.decide import predict as stage

    cfg, ds, post = _decide_inputs(config, data, posterior)
    pred, table = stage.run(cfg, ds, post, log=log)
    return provenance.stamp(pred, provenance.info(cfg, "predict")), table


def design(config, data, posterior, *, log: _Log = _LOG) -> pd.DataFrame:
    """The design stage (`design:`): design.csv, the next blots ranked by their expected information about
    which mechanism changed in each resistant line."""
    from pipeline.decide import design as stage

    cfg, ds, post = _decide_inputs(config, data, posterior)
    return stage.run(cfg, ds, post, log=log)


def report(config, results) -> Path:
    """The report stage: `results`/report.html and figures/*.png (and misfit.csv for blots) from the fit's
    outputs in the folder `results`; returns the page's path."""
    from pipeline.outputs import report as stage

    return stage.write(load_config(config), results)


def compare(posteriors: dict) -> pd.DataFrame:
    """The compare stage: model variants fitted to the same data ({name: posterior}) ranked by PSIS-LOO."""
    from pipeline.outputs import compare as stage

    return stage.compare({name: p.posterior if isinstance(p, Fit) else p for name, p in posteriors.items()})


# ---- helpers -----------------------------------------------------------------------------------------
def _petab(cfg: dict) -> bool:
    return "petab" in cfg


def _existing(path, fix: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError([Problem(str(path), "does not exist", fix=fix)])
    return path


def _data(cfg: dict, data):
    """The ingested blots of a blot config: `data` as given, read, or loaded from the config's dataset."""
    import xarray as xr

    if isinstance(data, xr.Dataset):
        return data
    if data is None or Path(data).is_dir():
        return load_dataset(cfg["dataset"] if data is None else data)
    return read_dataset(data)


def _posterior(posterior):
    import arviz as az

    if isinstance(posterior, Fit):
        return posterior.posterior
    if isinstance(posterior, az.InferenceData):
        return posterior
    return az.from_netcdf(_existing(posterior, "run the fit first (snakemake, or make demo)"))


def _decide_inputs(config, data, posterior):
    """(config, dataset, posterior group) of predict and design, the config's lines checked against the data
    before the posterior is read."""
    from pipeline import vocabulary
    from pipeline.problems import one_of

    cfg = load_config(config)
    shown = "config" if isinstance(config, dict) else str(config)
    if _petab(cfg):
        raise InputError([Problem(shown, "is a PEtab problem; predict and design need a blot dataset",
                                  key="petab", fix="run them on a config with a `dataset:`")])
    files = [p for p in (data, posterior) if isinstance(p, (str, Path)) and not Path(p).exists()]
    if files:
        raise InputError([Problem(str(p), "does not exist", fix="run the fit first (snakemake, or make demo)")
                          for p in files])
    ds = _data(cfg, data)
    lines = sorted(set(str(x) for x in ds[vocabulary.CELL_LINE].values) - {ds.attrs["reference_line"]})
    bad = [Problem(shown, "is not a resistant (non-reference) line of the dataset", key=f"predict.resists.{line}",
                   value=line, fix=one_of(lines, line)) for line in cfg["predict"]["resists"] if line not in lines]
    if bad:
        raise InputError(bad)
    return cfg, ds, _posterior(posterior).posterior
