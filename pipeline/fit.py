"""The blot model's `fit_map` and `fit` stages: from an ingested dataset and a config to `map.json`,
`posterior.nc`, `shifts.csv` and `diagnostics.json` (see README.md, "Outputs").

`BlotModel` is `pipeline.model.posterior.Model` with what the inference engine (`pipeline.inference.engine`)
asks of a model besides the log density: the posterior group's variables, the measurements' labels, the
prior group, and how to build it again in a worker process.
"""

from __future__ import annotations

from typing import Callable

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.blots import design
from pipeline.model import solver
from pipeline import vocabulary as v
from pipeline.inference import engine
from pipeline.model.posterior import Model

SHIFT_COLUMNS = ["cell_line", "mechanism", "parameter", "median_log2_fc", "ci90_low", "ci90_high", "prob_shift"]


class BlotModel(Model):
    """The posterior of one blot analysis (config x ingested dataset) with the engine's model interface."""

    def __init__(self, config: dict, ds: xr.Dataset):
        super().__init__(config, design.from_dataset(ds), solver.SolverSettings(**config["solver"]))
        self.dataset = ds
        self.rebuild = (model, (config, ds))
        self.attrs = {"reference_line": self.lines[0], "shift_prior": self.shift_prior,
                      "estimated": list(self.estimated)}

    def variables(self, flat_u, observed) -> tuple[dict, dict, dict]:
        named = jax.jit(jax.vmap(self.named))(flat_u)
        est = np.asarray(named["estimates"])
        data = {name: est[:, i] for i, name in enumerate(self.estimated)}
        data.update({k: named[k] for k in ("shift", "log2_fc", "offset", "tau") if k in named})
        data.update(sigma=observed["sigma"], log_scale=observed["log_scale"])  # sigma: u's, or drawn (integrated)
        pair = ["cell_line", "shift_parameter"]
        dims = {"shift": pair, "log2_fc": pair, "sigma": [v.TARGET], "offset": [v.TARGET], "tau": ["cell_line"],
                "log_scale": ["scale"]}
        coords = {"cell_line": list(self.shifted_lines), "shift_parameter": [p for _, p in self.shift_params],
                  v.TARGET: list(self.targets), "scale": [f"{b}|{t}" for b, t in self.design.groups],
                  "mechanism": ("shift_parameter", [mech for mech, _ in self.shift_params]),
                  "scale_blot": ("scale", [b for b, _ in self.design.groups]),
                  "scale_target": ("scale", [t for _, t in self.design.groups])}
        return data, {k: d for k, d in dims.items() if k in data}, coords

    def measurements(self) -> tuple[np.ndarray, dict]:
        ds = self.dataset
        return ds[v.Y].values, {c: ds[c].values if c == v.DIM_MEASUREMENT else ds[c] for c in ds[v.Y].coords}

    def prior_group(self, key, n: int) -> xr.Dataset:
        """The posterior group's parameters (estimates, shift, log2_fc, sigma, ...) under the prior: n exact
        draws of u (`Model.prior_draw`) as one chain, labelled as in `posterior`."""
        named = jax.jit(jax.vmap(lambda k: self.named(self.prior_draw(k))))(jax.random.split(key, n))
        one = lambda x: np.asarray(x)[None]  # noqa: E731
        est = np.asarray(named["estimates"])
        data = {name: (("chain", "draw"), one(est[:, i])) for i, name in enumerate(self.estimated)}
        pair = ("chain", "draw", "cell_line", "shift_parameter")
        sigma = named["sigma"] if "sigma" in named else self.sigma_scale * jnp.abs(  # integrated: its own prior
            jax.random.normal(jax.random.fold_in(key, 1), (n, len(self.targets))))
        data.update({"shift": (pair, one(named["shift"])), "log2_fc": (pair, one(named["log2_fc"])),
                     "sigma": (("chain", "draw", v.TARGET), one(sigma))})
        if "offset" in named:
            data["offset"] = (("chain", "draw", v.TARGET), one(named["offset"]))
        if "tau" in named:
            data["tau"] = (("chain", "draw", "cell_line"), one(named["tau"]))
        coords = {"chain": [0], "draw": np.arange(n), "cell_line": list(self.shifted_lines),
                  "shift_parameter": [p for _, p in self.shift_params], v.TARGET: list(self.targets)}
        return xr.Dataset(data, coords=coords).assign_coords(
            mechanism=("shift_parameter", [mech for mech, _ in self.shift_params]))


def model(config: dict, ds: xr.Dataset) -> BlotModel:
    return BlotModel(config, ds)


# ---- MAP ---------------------------------------------------------------------------------------------
def run_map(config: dict, ds: xr.Dataset, log: Callable[[str], None] = print) -> dict:
    m = model(config, ds)
    log(f"estimated in every line ({len(m.estimated)}): {', '.join(m.estimated)}; shiftable per non-reference "
        f"line ({len(m.shift_params)}): {', '.join(p for _, p in m.shift_params) or 'none'}")
    named = jax.jit(m.named)
    return engine.map_fits(m, config, lambda u: _named_json(m, named(u)), log)


def _named_json(m: Model, q: dict) -> dict:
    out = {"parameters": {n: float(x) for n, x in zip(m.estimated, np.asarray(q["estimates"]))},
           "log2_fc": {line: {p: float(x) for (_, p), x in zip(m.shift_params, row)}
                       for line, row in zip(m.shifted_lines, np.asarray(q["log2_fc"]))}}
    if "sigma" in q:  # (not with prior.integrate_sigma)
        out["sigma"] = {t: float(x) for t, x in zip(m.targets, np.asarray(q["sigma"]))}
    if "offset" in q:
        out["offset"] = {t: float(x) for t, x in zip(m.targets, np.asarray(q["offset"]))}
    return out


# ---- posterior ---------------------------------------------------------------------------------------
def run_posterior(config: dict, ds: xr.Dataset, map_result: dict, log: Callable[[str], None] = print,
                  checkpoint=None, workers: int | None = None):
    """(InferenceData, shifts table, diagnostics dict). checkpoint: a path the sampler saves its state at and
    resumes from (`pipeline.inference.checkpoint`); workers: the most chain worker processes."""
    m = model(config, ds)
    idata, diag = engine.posterior(m, config, map_result, log, checkpoint=checkpoint, workers=workers)
    idata.add_groups(constant_data=ds.drop_vars(v.Y))
    return idata, shift_table(idata, config["summary"]["threshold_log2"]), diag


def shift_table(idata: az.InferenceData, threshold_log2: float = 1.0) -> pd.DataFrame:
    """One row per non-reference line x shifted parameter, most probably shifted first."""
    fc = idata.posterior["log2_fc"].stack(sample=("chain", "draw"))
    rows = []
    for line in fc["cell_line"].values:
        for j, param in enumerate(fc["shift_parameter"].values):
            x = fc.sel(cell_line=line).isel(shift_parameter=j).values
            rows.append({"cell_line": str(line), "mechanism": str(fc["mechanism"].values[j]), "parameter": str(param),
                         "median_log2_fc": float(np.median(x)), "ci90_low": float(np.quantile(x, 0.05)),
                         "ci90_high": float(np.quantile(x, 0.95)),
                         "prob_shift": float(np.mean(np.abs(x) > threshold_log2))})
    table = pd.DataFrame(rows, columns=SHIFT_COLUMNS)
    return table.sort_values(["prob_shift", "cell_line"], ascending=[False, True], kind="stable").reset_index(drop=True)


def top_shifts(table: pd.DataFrame, n: int = 3) -> str:
    """Plain text: the most probably shifted mechanism parameters of each resistant line."""
    out = []
    for line, rows in table.groupby("cell_line", sort=True):
        out.append(f"{line}:")
        for _, r in rows.head(n).iterrows():
            fold = 2.0 ** r["median_log2_fc"]
            out.append(f"  {r['mechanism']} ({r['parameter']}): {fold:.3g}-fold "
                       f"[90% CI {2.0 ** r['ci90_low']:.3g} to {2.0 ** r['ci90_high']:.3g}], "
                       f"P(|log2 FC| > threshold) = {r['prob_shift']:.2f}")
    return "\n".join(out)
