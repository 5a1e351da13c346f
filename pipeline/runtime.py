"""What the pipeline changes in the Python process, all here: `configure()`.

`import pipeline` changes nothing (it does not even import JAX). The modules that build or solve a model
(`pipeline.model.solver`, `simulate`, `rosenbrock`, `observation`, and `pipeline.petab.problem`) call
`configure()` when they are imported, before they import diffrax or optimistix, and `pipeline.api` calls it
when it is imported; so any API function, any CLI command that simulates or fits, and any import of those
modules makes these two process-wide changes, once:

- **float64 in JAX** (`jax.config.update("jax_enable_x64", True)`): the network is stiff and its
  steady states are found by Newton solves; in float32 the default tolerances (rtol 1e-4, atol 1e-7, and
  1e-10 in the PEtab references) are at the level of round-off, step-size control fails and log-likelihoods
  of hundreds of bands lose their digits. Every array JAX makes afterwards defaults to 64 bits, also in
  your own code.
- **`EQX_ON_ERROR=nan`** unless the variable is set already: with equinox's default (`raise`), a NaN inside
  an implicit solver's linear solve raises through a host callback even under `throw=False` and ends a NUTS
  run (../shared/design/pitfalls.md); as a NaN it becomes a rejected proposal. Equinox reads the variable
  when it is imported, so it takes effect only if equinox (diffrax, optimistix, lineax) was not imported
  before the pipeline's model; set it yourself (`os.environ["EQX_ON_ERROR"] = "nan"`) if you import them
  first. Worker processes (`sampler.chain_method: processes`) inherit it.

The CLI sets three more defaults for its own process, where they are harmless: see `pipeline.cli`.
"""

from __future__ import annotations

import os

EQX_ON_ERROR = "nan"


def configure() -> None:
    """Turn on float64 in JAX and default EQX_ON_ERROR to `nan` (see the module docstring); idempotent."""
    os.environ.setdefault("EQX_ON_ERROR", EQX_ON_ERROR)
    import jax

    jax.config.update("jax_enable_x64", True)
