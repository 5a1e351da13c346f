"""The `fit_map` and `fit_nuts` stages: from an ingested dataset and a config to `map.json`,
`posterior.nc`, `shifts.csv` and `diagnostics.json` (see README.md, "Outputs").

Random streams: the config's `seed` gives one key; each stage folds in its own number, so a
stage's results depend on the seed and its inputs only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import arviz as az
import jax
import numpy as np
import pandas as pd
import xarray as xr

from pipeline import design, mapfit, sampling, solver
from pipeline import vocabulary as v
from pipeline.outputs import atomic_path
from pipeline.posterior import Model

STAGE_MAP, STAGE_NUTS, STAGE_OBSERVE, STAGE_PRIOR = 1, 2, 3, 4
PRIOR_DRAWS = 1000  # the `prior` group of posterior.nc (prior-to-posterior contraction in the report)
SHIFT_COLUMNS = ["cell_line", "mechanism", "parameter", "median_log2_fc", "ci90_low", "ci90_high", "prob_shift"]


def model(config: dict, ds: xr.Dataset) -> Model:
    return Model(config, design.from_dataset(ds), solver.SolverSettings(**config["solver"]))


def _key(config: dict, stage: int):
    return jax.random.fold_in(jax.random.PRNGKey(config["seed"]), stage)


# ---- MAP ---------------------------------------------------------------------------------------------
def run_map(config: dict, ds: xr.Dataset, log: Callable[[str], None] = print) -> dict:
    m = model(config, ds)
    log(f"estimated in every line ({len(m.estimated)}): {', '.join(m.estimated)}; shiftable per non-reference "
        f"line ({len(m.shift_params)}): {', '.join(p for _, p in m.shift_params) or 'none'}")
    named = jax.jit(m.named)
    return map_fits(m, config, lambda u: _named_json(m, named(u)), log)


def map_fits(m, config: dict, describe: Callable[[np.ndarray], dict], log: Callable[[str], None] = print) -> dict:
    """The `map.json` content of multi-start MAP fits of any model with the `posterior.Model` interface (dim,
    coords, log_density, prior_draw, kink_mask, kink_gradient, log_y); describe(u) gives each fit's named values."""
    cfg = config["map"]
    opt = mapfit.Optimizer(m)
    starts = mapfit.run(m, _key(config, STAGE_MAP), cfg["starts"], cfg["steps"], cfg["gtol"], log, optimizer=opt)
    fits = []
    for rank, s in enumerate(starts.order[:cfg["keep"]]):
        if not np.isfinite(starts.objective[s]):
            break
        fits.append({"rank": rank + 1, "start": int(s), "log_posterior": -float(starts.objective[s]),
                     "status": starts.status[s], "iterations": int(starts.iterations[s]),
                     "max_abs_grad": float(starts.max_abs_grad[s]),
                     **describe(starts.u[s]), "u": starts.u[s].tolist()})
    status = np.array(starts.status)
    best = np.min(starts.objective)
    summary = {"starts": len(status), **{k: int(np.sum(status == k)) for k in
               (mapfit.CONVERGED, mapfit.STALLED, mapfit.MAX_STEPS, mapfit.FAILED_START)},
               "within_1_of_best": int(np.sum(starts.objective <= best + 1.0)) if np.isfinite(best) else 0,
               "gradient_batches": starts.evaluations, "wall_s": round(starts.wall_s, 1)}
    out = {"analysis": config["analysis"], "coords": list(m.coords), "start_statistics": summary, "fits": fits}
    if fits:  # the curvature at the best fit: a Laplace approximation, and NUTS's starting mass matrix
        hess = mapfit.hessian(opt, starts.u[starts.order[0]], cfg["starts"])
        out["hessian_at_best"] = hess.tolist()
    return out


def _named_json(m: Model, q: dict) -> dict:
    out = {"parameters": {n: float(x) for n, x in zip(m.estimated, np.asarray(q["estimates"]))},
           "log2_fc": {line: {p: float(x) for (_, p), x in zip(m.shift_params, row)}
                       for line, row in zip(m.shifted_lines, np.asarray(q["log2_fc"]))},
           "sigma": {t: float(x) for t, x in zip(m.targets, np.asarray(q["sigma"]))}}
    if "offset" in q:
        out["offset"] = {t: float(x) for t, x in zip(m.targets, np.asarray(q["offset"]))}
    return out


def write_json(obj: dict, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


# ---- NUTS --------------------------------------------------------------------------------------------
def chain_inits(map_result: dict, chains: int, tolerance: float) -> np.ndarray:
    """Chain starting points: the MAP fits within `tolerance` log-density units of the best, in rank order,
    repeated when there are fewer than chains."""
    fits = map_result["fits"]
    if not fits:
        raise RuntimeError("no MAP fit succeeded: every start failed (see map.json start_statistics)")
    best = fits[0]["log_posterior"]
    near = [np.array(f["u"]) for f in fits if f["log_posterior"] >= best - tolerance]
    return np.stack([near[c % len(near)] for c in range(chains)])


def run_nuts(config: dict, ds: xr.Dataset, map_result: dict, log: Callable[[str], None] = print):
    """(InferenceData, shifts table, diagnostics dict)."""
    t0 = time.perf_counter()
    m = model(config, ds)
    draws = sample(m, config, map_result, (model, (config, ds)), log)
    idata = inference_data(m, draws, ds, _key(config, STAGE_OBSERVE))
    idata.add_groups(prior=prior_group(m, _key(config, STAGE_PRIOR)))
    table = shift_table(idata, config["summary"]["threshold_log2"])
    diag = diagnostics(idata, draws, time.perf_counter() - t0)
    return idata, table, diag


def sample(m, config: dict, map_result: dict, rebuild: tuple[Callable, tuple], log: Callable[[str], None] = print
           ) -> sampling.Draws:
    """NUTS draws of any model with the `posterior.Model` interface, from the MAP fits of `map_result`;
    rebuild = (a module-level function, its arguments) that builds `m` again in a worker process
    (`chain_method: processes`)."""
    if list(m.coords) != map_result["coords"]:
        raise RuntimeError("map.json was fitted with another model variant; rerun fit_map")
    cfg = config["nuts"]
    inits = chain_inits(map_result, cfg["chains"], cfg["init_tolerance"])
    inverse_mass = None
    if cfg["mass_init"] == "hessian":
        inverse_mass = mapfit.inverse_mass(np.array(map_result["hessian_at_best"], dtype=float))
        if not cfg["dense_mass"]:
            inverse_mass = np.diag(inverse_mass).copy()
    log(f"NUTS: {cfg['chains']} chain(s) x ({cfg['warmup']} warmup + {cfg['samples']} draws), "
        f"{cfg['chain_method']}, {'dense' if cfg['dense_mass'] else 'diagonal'} mass matrix (the first call compiles)")
    if cfg["chain_method"] == "processes" and cfg["chains"] > 1:
        make_model, model_args = rebuild
        draws = sampling.run_in_processes(make_model, model_args, cfg, inverse_mass, _key(config, STAGE_NUTS), inits)
    else:
        draws = sampling.Sampler(m, cfg, inverse_mass).run(_key(config, STAGE_NUTS), inits)
    log(f"NUTS done in {draws.wall_warmup_s + draws.wall_sampling_s:.0f} s; computing predictions per draw ...")
    return draws


def inference_data(m: Model, draws: sampling.Draws, ds: xr.Dataset, key) -> az.InferenceData:
    chains, n, d = draws.u.shape
    flat = draws.u.reshape(chains * n, d)
    named = jax.jit(jax.vmap(m.named))(flat)
    keys = jax.random.split(key, chains * n)
    observed = jax.lax.map(lambda a: m.observe(*a), (flat, keys), batch_size=8)
    shape = lambda x: np.asarray(x).reshape((chains, n) + np.shape(x)[1:])  # noqa: E731
    groups = [f"{b}|{t}" for b, t in m.design.groups]
    lines = list(m.shifted_lines)
    shift_params = [p for _, p in m.shift_params]
    est = np.asarray(named["estimates"])
    posterior = {name: shape(est[:, i]) for i, name in enumerate(m.estimated)}
    posterior.update({"shift": shape(named["shift"]), "log2_fc": shape(named["log2_fc"]),
                      "sigma": shape(named["sigma"]), "log_scale": shape(observed["log_scale"])})
    dims = {"shift": ["cell_line", "shift_parameter"], "log2_fc": ["cell_line", "shift_parameter"],
            "sigma": [v.TARGET], "log_scale": ["scale"], v.Y: [v.DIM_MEASUREMENT]}
    if "offset" in named:
        posterior["offset"] = shape(named["offset"])
        dims["offset"] = [v.TARGET]
    if "tau" in named:
        posterior["tau"] = shape(named["tau"])
        dims["tau"] = ["cell_line"]
    sample_stats = sampler_stats(draws, shape(observed["ok"]))
    coords = {"cell_line": lines, "shift_parameter": shift_params, v.TARGET: list(m.targets), "scale": groups,
              v.DIM_MEASUREMENT: ds[v.DIM_MEASUREMENT].values}
    idata = az.from_dict(posterior=posterior, sample_stats=sample_stats,
                         log_likelihood={v.Y: shape(observed["log_lik"])},
                         posterior_predictive={v.Y: shape(observed["y_rep"])},
                         observed_data={v.Y: ds[v.Y].values}, coords=coords, dims=dims)
    post = idata.posterior.assign_coords(
        mechanism=("shift_parameter", [mech for mech, _ in m.shift_params]),
        scale_blot=("scale", [b for b, _ in m.design.groups]), scale_target=("scale", [t for _, t in m.design.groups]))
    idata.posterior = post
    measurement_coords = {c: ds[c] for c in ds[v.Y].coords if c != v.DIM_MEASUREMENT}
    for group in ("observed_data", "log_likelihood", "posterior_predictive"):
        setattr(idata, group, getattr(idata, group).assign_coords(measurement_coords))
    add_chain_counts(idata, draws)
    idata.add_groups(constant_data=ds.drop_vars(v.Y))
    idata.posterior.attrs.update({"reference_line": m.lines[0], "shift_prior": m.shift_prior,
                                  "estimated": list(m.estimated)})
    return idata


def prior_group(m: Model, key, n: int = PRIOR_DRAWS) -> xr.Dataset:
    """The posterior group's parameters (estimates, shift, log2_fc, sigma, ...) under the prior: n exact
    draws of u (`Model.prior_draw`) as one chain, labelled as in `posterior`."""
    named = jax.jit(jax.vmap(lambda k: m.named(m.prior_draw(k))))(jax.random.split(key, n))
    one = lambda x: np.asarray(x)[None]  # noqa: E731
    est = np.asarray(named["estimates"])
    data = {name: (("chain", "draw"), one(est[:, i])) for i, name in enumerate(m.estimated)}
    pair = ("chain", "draw", "cell_line", "shift_parameter")
    data.update({"shift": (pair, one(named["shift"])), "log2_fc": (pair, one(named["log2_fc"])),
                 "sigma": (("chain", "draw", v.TARGET), one(named["sigma"]))})
    if "offset" in named:
        data["offset"] = (("chain", "draw", v.TARGET), one(named["offset"]))
    if "tau" in named:
        data["tau"] = (("chain", "draw", "cell_line"), one(named["tau"]))
    coords = {"chain": [0], "draw": np.arange(n), "cell_line": list(m.shifted_lines),
              "shift_parameter": [p for _, p in m.shift_params], v.TARGET: list(m.targets)}
    return xr.Dataset(data, coords=coords).assign_coords(
        mechanism=("shift_parameter", [mech for mech, _ in m.shift_params]))


def sampler_stats(draws: sampling.Draws, solver_ok: np.ndarray) -> dict:
    """The `sample_stats` group (ArviZ names) of NUTS draws; solver_ok: [chains, draws] the solves of each draw."""
    st = draws.stats
    return {"lp": -st["potential_energy"], "diverging": st["diverging"].astype(bool),
            "n_steps": st["num_steps"], "tree_depth": np.floor(np.log2(st["num_steps"])).astype(int) + 1,
            "acceptance_rate": st["accept_prob"], "step_size": st["adapt_state.step_size"],
            "energy": st["energy"], "solver_ok": solver_ok}


def add_chain_counts(idata: az.InferenceData, draws: sampling.Draws) -> None:
    """Per-chain solver failures (sampling, warmup) and warmup leapfrog steps, into `sample_stats`."""
    idata.sample_stats["solver_failures"] = xr.DataArray(draws.failures, dims=["chain"])
    idata.sample_stats["solver_failures_warmup"] = xr.DataArray(draws.failures_warmup, dims=["chain"])
    idata.sample_stats["warmup_steps"] = xr.DataArray(draws.warmup_steps, dims=["chain"])


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


def diagnostics(idata: az.InferenceData, draws: sampling.Draws, wall_s: float) -> dict:
    post = idata.posterior
    chains = post.sizes["chain"]
    var_names = [k for k in post.data_vars if k != "log_scale"]  # scales are exact conditional draws
    rhat = az.rhat(post, var_names=var_names) if chains > 1 else None
    ess_bulk = az.ess(post, var_names=var_names, method="bulk")
    ess_tail = az.ess(post, var_names=var_names, method="tail")
    mx = lambda d: float(np.nanmax([np.nanmax(d[k].values) for k in d.data_vars]))  # noqa: E731
    mn = lambda d: float(np.nanmin([np.nanmin(d[k].values) for k in d.data_vars]))  # noqa: E731
    steps = draws.stats["num_steps"]
    min_bulk = mn(ess_bulk)
    return {
        "max_rhat": mx(rhat) if rhat is not None else None,
        "min_ess_bulk": min_bulk, "min_ess_tail": mn(ess_tail),
        "ess_bulk_per_s": min_bulk / draws.wall_sampling_s,
        "divergences": int(draws.stats["diverging"].sum()),
        "divergences_per_chain": draws.stats["diverging"].sum(axis=1).astype(int).tolist(),
        "solver_failures": int(draws.failures.sum()),
        "solver_failures_per_chain": draws.failures.astype(int).tolist(),
        "solver_failures_warmup_per_chain": draws.failures_warmup.astype(int).tolist(),
        "gradient_evaluations": int(steps.sum() + draws.warmup_steps.sum()),
        "gradient_evaluations_warmup": int(draws.warmup_steps.sum()),
        "mean_steps_per_iteration": float(steps.mean()),
        "step_size_per_chain": [float(x) for x in draws.stats["adapt_state.step_size"][:, -1]],
        "wall_s": round(wall_s, 1), "wall_warmup_s": round(draws.wall_warmup_s, 1),
        "wall_sampling_s": round(draws.wall_sampling_s, 1),
        "chains": chains, "draws": int(post.sizes["draw"]),
    }


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
