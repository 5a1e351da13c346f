"""The `simulate` stage: trajectories of a dataset's conditions as a labelled Dataset, and a figure.

`run(config, data)` simulates every condition of the dataset on a time grid (0 to the last
measured time, plus the measured times) with the config's model variant; `plot` draws the
observables of the measured targets per cell line, with the bands overlaid on the model's
scale (each blot x target divided by its best scale at these parameters).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from pipeline.blots import design  # noqa: E402
from pipeline.model import network, observation, parameters, simulate, solver, variant
from pipeline import vocabulary as v  # noqa: E402


def time_grid(last_min: float, measured, n: int) -> np.ndarray:
    """0, then n - 1 log-spaced points from 0.5 min to the last time, plus the measured times."""
    log_spaced = np.geomspace(0.5, max(last_min, 1.0), n - 1)
    return np.unique(np.concatenate([[0.0], log_spaced, np.asarray(measured, dtype=float)]))


def run(config: dict, data: xr.Dataset) -> xr.Dataset:
    settings = solver.SolverSettings(**config["solver"])
    d = design.from_dataset(data)
    grid = time_grid(float(data[v.TIME_MIN].max()), data[v.TIME_MIN].values, config["simulate"]["n_times"])
    by_line = variant.line_values(config, d.lines)
    matrix = np.stack([parameters.as_array(by_line[line]) for line in d.lines])
    sim = simulate.simulate(jnp.asarray(matrix), d.conditions, np.tile(grid, (len(d.condition_ids), 1)), settings)
    cond = v.DIM_CONDITION
    out = xr.Dataset(
        data_vars={
            "observable": ((cond, v.TIME_MIN, v.TARGET), np.asarray(sim.observables)),
            "states": ((cond, v.TIME_MIN, "state"), np.asarray(sim.states)),
            "ok": ((cond,), np.asarray(sim.ok)),
        },
        coords={cond: list(d.condition_ids), v.TIME_MIN: grid, v.TARGET: list(v.TARGETS),
                "state": list(network.STATES)},
        attrs={"parameters": json.dumps(by_line), "loops_off": json.dumps(config["model"]["loops_off"]),
               "solver": json.dumps(asdict(settings)), "dataset": config["dataset"]},
    )
    for name in (v.CELL_LINE, v.STIMULUS, v.STIMULUS_CONC, v.PRETREATMENT_MIN):
        out = out.assign_coords({name: (cond, data[name].values)})
    return out.assign_coords({v.DOSE_UM: ((cond, v.DIM_DRUG), data[v.DOSE_UM].values), v.DIM_DRUG: data[v.DIM_DRUG].values})


def scaled_bands(traj: xr.Dataset, data: xr.Dataset) -> np.ndarray:
    """Each band divided by its blot x target's best scale at the simulated parameters (model units)."""
    d = design.from_dataset(data)
    pred = traj["observable"].sel({v.DIM_CONDITION: data[v.CONDITION_ID], v.TIME_MIN: data[v.TIME_MIN],
                                   v.TARGET: data[v.TARGET]}).values
    log_s = observation.best_log_scales(jnp.log(pred), jnp.log(d.y), d.group, len(d.groups))
    return d.y / np.exp(np.asarray(log_s))[d.group]


def plot(traj: xr.Dataset, data: xr.Dataset):
    """Rows: cell lines; columns: measured targets; a line per condition, its bands as points."""
    targets = [t for t in v.TARGETS if t in set(data[v.TARGET].values)]
    lines = [data.attrs["reference_line"]] + sorted(set(traj[v.CELL_LINE].values) - {data.attrs["reference_line"]})
    bands = scaled_bands(traj, data)
    fig, axes = plt.subplots(len(lines), len(targets), figsize=(3.2 * len(targets), 2.6 * len(lines)),
                             sharex=True, squeeze=False)
    for r, line in enumerate(lines):
        cids = [str(c) for c in traj[v.DIM_CONDITION].values[traj[v.CELL_LINE].values == line]]
        colours = plt.cm.viridis(np.linspace(0, 0.9, len(cids)))
        for c, target in enumerate(targets):
            ax = axes[r, c]
            for cid, colour in zip(cids, colours):
                ax.plot(traj[v.TIME_MIN], traj["observable"].sel({v.DIM_CONDITION: cid, v.TARGET: target}),
                        color=colour, lw=1.2, label=cid.removeprefix(f"{line}_"))
                mine = (data[v.CONDITION_ID].values == cid) & (data[v.TARGET].values == target)
                ax.plot(data[v.TIME_MIN].values[mine], bands[mine], "o", ms=2.5, color=colour, alpha=0.7)
            ax.set_xscale("symlog", linthresh=10)
            ax.set_title(f"{line}: {target}", fontsize=9)
            if r == len(lines) - 1:
                ax.set_xlabel("min since stimulus")
        axes[r, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig
