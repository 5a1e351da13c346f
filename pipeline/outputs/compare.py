"""The `compare` stage: rank model variants fitted to the same blots by PSIS-LOO (ArviZ).

Each variant's posterior.nc holds the log-likelihood of every band per draw (`log_likelihood.y`);
PSIS-LOO estimates each variant's expected log predictive density for a new band (elpd_loo). Bands whose
Pareto k exceeds ArviZ's threshold (min(1 - 1/log10 S, 0.7) for S draws) are those for which the
estimate is unreliable; they are counted per variant (`pareto_k_bad`).
"""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from pipeline import vocabulary as v
from pipeline.problems import InputError, Problem

COLUMNS = ["variant", "rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight", "pareto_k_bad",
           "pareto_k_max", "pareto_k_threshold"]


def compare(posteriors: dict[str, str | Path | az.InferenceData]) -> pd.DataFrame:
    """One row per variant, best (highest elpd_loo) first; the columns of `COLUMNS`."""
    idatas = {name: p if isinstance(p, az.InferenceData) else _load(p) for name, p in posteriors.items()}
    if len(idatas) < 2:
        raise InputError([Problem("compare", f"got {len(idatas)} variant", fix="give two variants or more")])
    _same_data(idatas, posteriors)
    loos = {name: az.loo(idata, pointwise=True, scale="log") for name, idata in idatas.items()}  # once each
    table = az.compare(loos, ic="loo", method="stacking", scale="log")
    rows = []
    for name, r in table.iterrows():
        loo = loos[name]
        k = np.asarray(loo.pareto_k)
        threshold = float(getattr(loo, "good_k", 0.7))
        rows.append({"variant": name, "rank": int(r["rank"]) + 1, "elpd_loo": float(r["elpd_loo"]),
                     "se": float(r["se"]), "elpd_diff": float(r["elpd_diff"]), "dse": float(r["dse"]),
                     "p_loo": float(r["p_loo"]), "weight": float(r["weight"]),
                     "pareto_k_bad": int(np.sum(k > threshold)), "pareto_k_max": float(np.max(k)),
                     "pareto_k_threshold": threshold})
    return pd.DataFrame(rows, columns=COLUMNS)


def _load(path) -> az.InferenceData:
    path = Path(path)
    if not path.is_file():
        raise InputError([Problem(str(path), "does not exist", fix="fit the variant first (its fit stage)")])
    idata = az.from_netcdf(path)
    if "log_likelihood" not in idata.groups():
        raise InputError([Problem(str(path), "has no log_likelihood group",
                                  fix="refit it with this version's `fit`, which writes one")])
    return idata


def _same_data(idatas: dict, sources: dict) -> None:
    names = list(idatas)
    ref = idatas[names[0]].observed_data[v.Y].values
    problems = [Problem(str(sources[n]), f"was fitted to other data than '{names[0]}'",
                        fix="compare only variants fitted to the same dataset")
                for n in names[1:] if not np.array_equal(idatas[n].observed_data[v.Y].values, ref)]
    if problems:
        raise InputError(problems)
