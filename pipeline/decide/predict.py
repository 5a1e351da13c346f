"""The `predict` stage: what each posterior draw says about treatments the dataset does not hold.

Every draw of the posterior is a full parameter set per cell line (`Model.values_of`). `simulate_draws` runs
every candidate treatment (`treatments.candidates`) in every line for every draw, vmapped over the draws
in batches (`batch_size`: a GPU runs hundreds at once), under the dataset's stimulus and pretreatment. `reversal` compares,
per resistant line, each treatment with the parental (reference) line under the drug the line resists:

    ratio = read-out of the resistant line under the treatment / read-out of the parental line under
            the resisted drug at its reference dose (same draw, same time),

and prob_reversal = P(ratio <= 1): the posterior probability that the treatment brings the resistant line down
to (or below) the level that the drug reaches in the cells it still works on. Model values are in the
network's units, which the lines share (the blot scales cancel in a ratio of lines on one blot).
"""

from __future__ import annotations

import functools
import time
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from pipeline import fit, vocabulary as v
from pipeline.decide import treatments as tr
from pipeline.model import simulate, solver
from pipeline.model.posterior import Model

REVERSAL_COLUMNS = ["cell_line", "treatment", "readout", "time_min", "prob_reversal", "median_ratio", "ci90_low",
                    "ci90_high", "reference"]


def thin(n_available: int, n: int) -> np.ndarray:
    """Indices of at most n draws, evenly spaced over the flattened (chain, draw) axis."""
    return np.unique(np.linspace(0, n_available - 1, min(n, n_available)).round().astype(int))


def draw_values(m: Model, posterior: xr.Dataset, n: int) -> np.ndarray:
    """[draws, lines, P] natural parameter vectors of every line (reference first) for at most n posterior draws."""
    flat = posterior.stack(sample=("chain", "draw"))
    idx = thin(flat.sizes["sample"], n)
    est = np.stack([flat[name].values[idx] for name in m.estimated], axis=-1) if m.estimated else \
        np.zeros((len(idx), 0))
    delta = flat["shift"].transpose("sample", ...).values[idx] if m.shift_params else \
        np.zeros((len(idx), len(m.shifted_lines), 0))
    return np.asarray(jax.jit(jax.vmap(m.values_of))(jnp.asarray(est), jnp.asarray(delta)))


def protocol(cfg: dict, ds: xr.Dataset) -> tuple[str, float]:
    """(stimulus, pretreatment minutes) of the candidate conditions: the config's, else the dataset's most common."""
    stimulus = cfg["stimulus"] or Counter(str(s) for s in ds[v.STIMULUS].values).most_common(1)[0][0]
    pre = cfg["pretreatment_min"]
    if pre is None:
        pre = Counter(float(x) for x in ds[v.PRETREATMENT_MIN].values).most_common(1)[0][0]
    return stimulus, float(pre)


def batch_size() -> int:
    """Draws simulated together (one vmapped call): a GPU takes many at once; two CPU cores gain little."""
    return 256 if jax.default_backend() == "gpu" else 8


@functools.partial(jax.jit, static_argnames=("settings",))
def _simulate(values, doses, stimulus, pretreatment_min, times, settings):
    """One batch: values [batch, lines, P] -> (observables [batch, lines, C, T, targets], ok [batch, lines, C])."""
    n_lines, n = values.shape[1], doses.shape[0]
    conds = simulate.Conditions(jnp.repeat(jnp.arange(n_lines), n), jnp.tile(stimulus, (n * n_lines, 1)),
                                jnp.tile(doses, (n_lines, 1)), jnp.full(n * n_lines, pretreatment_min))
    t = jnp.tile(times, (n * n_lines, 1))

    def one(vals):
        sim = simulate.simulate(vals, conds, t, settings)
        return (sim.observables.reshape((n_lines, n) + sim.observables.shape[1:]), sim.ok.reshape(n_lines, n))

    return jax.vmap(one)(values)


def simulate_draws(values, treatments: list[tr.Treatment], times, stimulus: str, pretreatment_min: float,
                   settings: solver.SolverSettings = solver.SolverSettings()):
    """(observables [draws, lines, treatments, times, vocabulary.TARGETS], ok [draws, lines, treatments]).

    values: [draws, lines, P]; times: minutes since the stimulus (sorted); each line gets every treatment. The
    draws go through in batches of `batch_size()` (the last one padded), so any number of draws runs the one
    compiled program."""
    values = np.asarray(values, dtype=float)
    b = batch_size()
    pad = -len(values) % b
    padded = np.concatenate([values, np.repeat(values[-1:], pad, axis=0)]) if pad else values
    args = (jnp.asarray(tr.doses_matrix(treatments)), simulate.conditions(stimulus=[stimulus]).stimulus[0],
            float(pretreatment_min), jnp.asarray(np.sort(np.asarray(times, dtype=float))), settings)
    parts = [_simulate(jnp.asarray(padded[i:i + b]), *args) for i in range(0, len(padded), b)]
    obs = np.concatenate([np.asarray(o) for o, _ in parts])[:len(values)]
    ok = np.concatenate([np.asarray(k) for _, k in parts])[:len(values)]
    return obs, ok


def reference_treatment(drug: str, cfg: dict, ds: xr.Dataset) -> tr.Treatment:
    """The resisted drug at its reference dose: the config's, else the dataset's highest dose, else 1 uM."""
    if drug in cfg["reference_dose_uM"]:
        return {drug: float(cfg["reference_dose_uM"][drug])}
    doses = ds[v.DOSE_UM].sel({v.DIM_DRUG: drug}).values if drug in ds[v.DIM_DRUG].values else np.zeros(1)
    return {drug: float(doses.max()) if doses.max() > 0 else 1.0}


def reversal(pred: xr.Dataset, resists: dict[str, str], references: dict[str, tr.Treatment],
             reference_line: str) -> pd.DataFrame:
    """`reversal.csv`: per resistant line x treatment x read-out x time, the posterior of resistant / parental.

    pred: `run`'s Dataset; resists: {line: drug}; references: {drug: its reference treatment} (in pred's
    treatments). Draws whose solves failed are left out of that row's statistics."""
    x = pred["prediction"]
    ok = pred["ok"]
    rows = []
    for line, drug in resists.items():
        ref_name = tr.name(references[drug])
        base = x.sel(cell_line=reference_line, treatment=ref_name)
        base_ok = ok.sel(cell_line=reference_line, treatment=ref_name)
        for t_name in pred["treatment"].values:
            mine = x.sel(cell_line=line, treatment=t_name)
            good = (ok.sel(cell_line=line, treatment=t_name) & base_ok).values
            ratio = (mine / base).values  # [draw, time, readout]
            for k, readout in enumerate(pred["readout"].values):
                for j, minutes in enumerate(pred[v.TIME_MIN].values):
                    r = ratio[good, j, k]
                    if not len(r):
                        continue
                    rows.append({"cell_line": line, "treatment": str(t_name), "readout": str(readout),
                                 "time_min": float(minutes), "prob_reversal": float(np.mean(r <= 1.0)),
                                 "median_ratio": float(np.median(r)), "ci90_low": float(np.quantile(r, 0.05)),
                                 "ci90_high": float(np.quantile(r, 0.95)), "reference": f"{reference_line} + {ref_name}"})
    table = pd.DataFrame(rows, columns=REVERSAL_COLUMNS)
    return table.sort_values(["cell_line", "readout", "time_min", "prob_reversal", "median_ratio"],
                             ascending=[True, True, True, False, True], kind="stable").reset_index(drop=True)


def run(config: dict, ds: xr.Dataset, posterior: xr.Dataset, log=print) -> tuple[xr.Dataset, pd.DataFrame]:
    """(predictions.nc content: draw x cell_line x treatment x time_min x readout, reversal table)."""
    cfg = config["predict"]
    m = fit.model(config, ds)
    lines = list(m.lines)
    values = draw_values(m, posterior, cfg["draws"])
    candidates = tr.candidates(cfg)
    references = {drug: reference_treatment(drug, cfg, ds) for drug in sorted(set(cfg["resists"].values()))}
    known = {tr.name(t) for t in candidates}
    candidates += [t for t in references.values() if tr.name(t) not in known]
    stimulus, pre = protocol(cfg, ds)
    times = np.sort(np.asarray(cfg["times_min"], dtype=float))
    log(f"predict: {len(values)} draws x {len(lines)} lines x {len(candidates)} treatments, {stimulus} after "
        f"{pre:g} min of drug, read at {', '.join(f'{t:g}' for t in times)} min (the first call compiles)")
    t0 = time.perf_counter()
    obs, ok = simulate_draws(values, candidates, times, stimulus, pre, solver.SolverSettings(**config["solver"]))
    wall = time.perf_counter() - t0
    readouts = list(cfg["readouts"])
    cols = [v.TARGETS.index(r) for r in readouts]
    pred = xr.Dataset(
        {"prediction": (("draw", v.CELL_LINE, "treatment", v.TIME_MIN, "readout"), obs[..., cols]),
         "ok": (("draw", v.CELL_LINE, "treatment"), ok)},
        coords={"draw": np.arange(len(values)), v.CELL_LINE: lines, "treatment": [tr.name(t) for t in candidates],
                v.TIME_MIN: times, "readout": readouts,
                v.DOSE_UM: (("treatment", v.DIM_DRUG), tr.doses_matrix(candidates)), v.DIM_DRUG: list(v.DRUGS)},
        attrs={"stimulus": stimulus, "pretreatment_min": pre, "reference_line": lines[0],
               "units": "model units (shared by the lines)", "wall_s": round(wall, 1),
               "solver_failures": int((~ok).sum())})
    table = reversal(pred, cfg["resists"], references, lines[0])
    return pred, table


def summary(table: pd.DataFrame, n: int = 1) -> list[str]:
    """A sentence per resistant line and read-out/time: the treatment most likely to reverse resistance."""
    out = []
    for (line, readout, minutes), rows in table.groupby(["cell_line", "readout", "time_min"], sort=True):
        best = rows.sort_values(["prob_reversal", "median_ratio"], ascending=[False, True]).head(n)
        for _, r in best.iterrows():
            ratio = (f"median ratio {r['median_ratio']:.2g}, 90% CI {r['ci90_low']:.2g} to {r['ci90_high']:.2g}")
            if r["prob_reversal"] >= 0.5:
                out.append(f"{line}: {r['treatment']}: P = {r['prob_reversal']:.2f} that {readout} at {minutes:g} min "
                           f"falls to the level of {r['reference']} ({ratio})")
            else:
                out.append(f"{line}: no candidate is likely to bring {readout} at {minutes:g} min down to the level "
                           f"of {r['reference']}; closest: {r['treatment']} (P = {r['prob_reversal']:.2f}, {ratio})")
    return out
