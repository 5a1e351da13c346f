"""The inference engine: multi-start MAP (`map_fits`), posterior draws (`sample`), chain statistics
(`diagnostics`) and `InferenceData` assembly (`inference_data`) of any model with the interface below.
The blot model (`pipeline.fit.BlotModel`) and an imported PEtab problem (`pipeline.petab.fit.PetabModel`)
both implement it; nothing here knows which one it runs.

The model interface (every array method pure JAX in `u`, the flat unconstrained vector):

- `dim`, `coords` (names of the coordinates of u), `log_y` (the data argument of the log density);
- `log_density(u, log_y=None) -> (log posterior, ok)`, `prior_draw(key) -> u` (MAP starts),
  `kink_mask`, `kink_gradient(u)` (prior kinks at 0, see `optimize`);
- `observe(u, key) -> dict` per posterior draw: at least `log_lik` and `y_rep` ([measurements]) and `ok`,
  plus anything `variables` reports;
- `variables(flat_u, observed) -> (data, dims, coords)`: the `posterior` group's variables as arrays
  [draws, ...] with their dims, and the coords (a name's values, or (dim, values) for a label);
- `measurements() -> (y, coords)`: the observed data, and the coords of their measurement dim (its own values
  under `vocabulary.DIM_MEASUREMENT`, labels as (dim, values));
- `prior_group(key, n) -> xarray.Dataset`: n exact prior draws labelled as in the posterior group;
  `prior_variance(key) -> [D]`: the prior variance of each coordinate of u (`laplace`: what the data inform);
- `attrs`: the posterior group's attributes; `rebuild`: (a module-level function, its arguments) that
  builds the model again in a worker process (`sampler.chain_method: processes`).

Random streams: the config's `seed` gives one key; each stage folds in its own number (`key`), so a stage's
results depend on the seed and its inputs only.
"""

from __future__ import annotations

import time
from typing import Callable

import arviz as az
import jax
import numpy as np
import xarray as xr

from pipeline import vocabulary as v
from pipeline.inference import checkpoint as ckpt
from pipeline.inference import chees, laplace, mcmc, optimize

STAGE_MAP, STAGE_SAMPLE, STAGE_OBSERVE, STAGE_PRIOR, STAGE_DESIGN = 1, 2, 3, 4, 5
PRIOR_DRAWS = 1000  # the `prior` group of posterior.nc (prior-to-posterior contraction in the report)


def key(config: dict, stage: int):
    return jax.random.fold_in(jax.random.PRNGKey(config["seed"]), stage)


# ---- MAP ---------------------------------------------------------------------------------------------
def map_fits(m, config: dict, describe: Callable[[np.ndarray], dict], log: Callable[[str], None] = print) -> dict:
    """The `map.json` content of the config's multi-start MAP fits (`map:`); describe(u) gives each fit's
    named values."""
    cfg = config["map"]
    opt = optimize.Optimizer(m)
    starts = optimize.run(m, key(config, STAGE_MAP), cfg["starts"], cfg["steps"], cfg["gtol"], log, optimizer=opt)
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
               (optimize.CONVERGED, optimize.STALLED, optimize.MAX_STEPS, optimize.FAILED_START)},
               "within_1_of_best": int(np.sum(starts.objective <= best + 1.0)) if np.isfinite(best) else 0,
               "gradient_batches": starts.evaluations, "wall_s": round(starts.wall_s, 1)}
    out = {"analysis": config["analysis"], "coords": list(m.coords), "start_statistics": summary, "fits": fits}
    if fits:  # the curvature at the best fit: a Laplace approximation, and the sampler's starting mass matrix
        hess = optimize.hessian(opt, starts.u[starts.order[0]], cfg["starts"])
        out["hessian_at_best"] = hess.tolist()
        prior_var = m.prior_variance(jax.random.fold_in(key(config, STAGE_MAP), 1))
        out["laplace"] = laplace.analyse(hess, list(m.coords), prior_var)
        if out["laplace"].get("weak"):
            log(f"Barely informed at the best MAP fit (Laplace contraction < {laplace.WEAK}): "
                f"{', '.join(out['laplace']['weak'])}. An estimated parameter among them that no mechanism shifts "
                "can be held (model.fixed: {name: value}): the sampler then has that many fewer dimensions")
    return out


# ---- sampling ----------------------------------------------------------------------------------------
def chain_inits(map_result: dict, chains: int, tolerance: float) -> np.ndarray:
    """Chain starting points: the MAP fits within `tolerance` log-density units of the best, in rank order,
    repeated when there are fewer than chains."""
    fits = map_result["fits"]
    if not fits:
        raise RuntimeError("no MAP fit succeeded: every start failed (see map.json start_statistics)")
    best = fits[0]["log_posterior"]
    near = [np.array(f["u"]) for f in fits if f["log_posterior"] >= best - tolerance]
    return np.stack([near[c % len(near)] for c in range(chains)])


def method(cfg: dict) -> str:
    """The `sampler.method` to run: the config's, or for `auto` the one that suits this device: ChEES on a GPU
    (its chains run in lockstep with nothing sent to the host), NUTS on a CPU (chains in processes, one per
    core, where a vmapped batch gains little: benchmarks/README.md) and wherever the mass matrix comes from a
    pilot (`mass_init: pilot`, a NUTS warmup)."""
    if cfg["method"] != "auto":
        return cfg["method"]
    gpu = jax.default_backend() == "gpu"
    return "chees" if gpu and cfg["chains"] > 1 and cfg.get("mass_init") != "pilot" else "nuts"


def sample(m, config: dict, map_result: dict, log: Callable[[str], None] = print, checkpoint=None,
           workers: int | None = None) -> mcmc.Draws:
    """Posterior draws (the config's `sampler:`) started from the MAP fits of `map_result`. checkpoint: a path
    to save the run at every `sampler.checkpoint_every` draws and to resume it from (`checkpoint.py`; None: no
    saves, the same draws); workers: the most chain worker processes (default: one per core)."""
    if list(m.coords) != map_result["coords"]:
        raise RuntimeError("map.json was fitted with another model variant; rerun fit_map")
    cfg = {**config["sampler"], "method": method(config["sampler"])}
    cfg["chain_method"] = "vectorized" if cfg["method"] == "chees" else mcmc.chain_method(cfg, workers)
    inits = chain_inits(map_result, cfg["chains"], cfg["init_tolerance"])
    inverse_mass = None
    if cfg["mass_init"] in ("hessian", "pilot"):  # (pilot: the start of warmup, until the pilot window's end)
        inverse_mass = optimize.inverse_mass(np.array(map_result["hessian_at_best"], dtype=float))
        if not cfg["dense_mass"]:
            inverse_mass = np.diag(inverse_mass).copy()
    log(f"{cfg['method'].upper()}: {cfg['chains']} chain(s) x ({cfg['warmup']} warmup + {cfg['samples']} draws), "
        f"{cfg['chain_method']}, {'dense' if cfg['dense_mass'] else 'diagonal'} mass matrix "
        f"({'adapted' if cfg['adapt_mass'] else 'kept'}; the first call compiles)")
    saves = checkpoints(m, config, cfg, inverse_mass, inits, checkpoint, log)
    if cfg["method"] == "chees":
        draws = chees.run(m, cfg, inverse_mass, key(config, STAGE_SAMPLE), inits, ck=saves[0] if saves else None)
    elif cfg["chain_method"] == "processes" and cfg["chains"] > 1:
        make_model, model_args = m.rebuild
        draws = mcmc.run_in_processes(make_model, model_args, cfg, inverse_mass, key(config, STAGE_SAMPLE), inits,
                                      checkpoints=saves, workers=workers)
    else:
        draws = mcmc.Sampler(m, cfg, inverse_mass).run(key(config, STAGE_SAMPLE), inits, checkpoints=saves)
    log(f"sampling done in {draws.wall_warmup_s + draws.wall_sampling_s:.0f} s; computing predictions per draw ...")
    return draws


def checkpoints(m, config: dict, cfg: dict, inverse_mass, inits: np.ndarray, path, log) -> list | None:
    """Where the run saves (`checkpoint.plan` at `path`; None: no path, or `checkpoint_every` 0), each file's
    state said to the log: resumed, or of another run and ignored. The fingerprint holds what determines the
    draws: the config (its `sampler:` as run: method and chain layout resolved, but `progress`), the model's
    coordinates, the data, the starting mass matrix, and per file the starting points and keys."""
    if path is None or not cfg.get("checkpoint_every"):
        return None
    if not cfg["progress"] and cfg["method"] == "nuts":
        log("sampler.progress is false: NUTS saves its checkpoint only after warmup and at the end (mcmc.py)")
    vectorized = cfg["chain_method"] == "vectorized" and cfg["chains"] > 1  # (ChEES: always)
    run = {k: x for k, x in cfg.items() if k not in ("progress", "chain_method")}
    about = ckpt.fingerprint({**config, "sampler": run}, "vectorized" if vectorized else "chain by chain",
                             list(m.coords), m.log_y, inverse_mass, ckpt.environment())
    keys = np.asarray(jax.random.split(key(config, STAGE_SAMPLE), cfg["chains"]))
    saves = ckpt.plan(path, about, keys, inits, vectorized)
    for note in (ckpt.load(c)[1] for c in saves):
        if note:
            log(note)
    return saves


def posterior(m, config: dict, map_result: dict, log: Callable[[str], None] = print, checkpoint=None,
              workers: int | None = None):
    """(InferenceData with the prior group, diagnostics dict): the `fit` stage of any model (`sample`'s
    checkpoint and workers)."""
    t0 = time.perf_counter()
    draws = sample(m, config, map_result, log, checkpoint=checkpoint, workers=workers)
    idata = inference_data(m, draws, key(config, STAGE_OBSERVE))
    idata.add_groups(prior=m.prior_group(key(config, STAGE_PRIOR), PRIOR_DRAWS))
    diag = diagnostics(idata, draws, time.perf_counter() - t0)
    diag["sloppy_directions"] = map_result.get("laplace", {}).get("sloppy_directions", [])
    return idata, diag


# ---- outputs -----------------------------------------------------------------------------------------
def inference_data(m, draws: mcmc.Draws, key) -> az.InferenceData:
    """posterior (the model's `variables`), sample_stats, log_likelihood, posterior_predictive, observed_data."""
    chains, n, d = draws.u.shape
    flat = draws.u.reshape(chains * n, d)
    observed = jax.lax.map(lambda a: m.observe(*a), (flat, jax.random.split(key, chains * n)), batch_size=8)
    shape = lambda x: np.asarray(x).reshape((chains, n) + np.shape(x)[1:])  # noqa: E731
    data, dims, coords = m.variables(flat, observed)
    y, rows = m.measurements()
    labels = {k: c for k, c in rows.items() if k != v.DIM_MEASUREMENT}
    plain = {k: c for k, c in coords.items() if not isinstance(c, tuple)}
    idata = az.from_dict(posterior={k: shape(x) for k, x in data.items()},
                         sample_stats=sampler_stats(draws, shape(observed["ok"])),
                         log_likelihood={v.Y: shape(observed["log_lik"])},
                         posterior_predictive={v.Y: shape(observed["y_rep"])},
                         observed_data={v.Y: y}, coords={**plain, v.DIM_MEASUREMENT: rows[v.DIM_MEASUREMENT]},
                         dims={**dims, v.Y: [v.DIM_MEASUREMENT]})
    idata.posterior = idata.posterior.assign_coords({k: c for k, c in coords.items() if isinstance(c, tuple)})
    for group in ("posterior", "observed_data", "log_likelihood", "posterior_predictive"):
        ds = getattr(idata, group)
        if v.DIM_MEASUREMENT in ds.dims:
            setattr(idata, group, ds.assign_coords(labels))
    add_chain_counts(idata, draws)
    idata.posterior.attrs.update(m.attrs)
    return idata


def sampler_stats(draws: mcmc.Draws, solver_ok: np.ndarray) -> dict:
    """The `sample_stats` group (ArviZ names) of the draws; solver_ok: [chains, draws] the solves of each draw."""
    st = draws.stats
    out = {"lp": -st["potential_energy"], "diverging": st["diverging"].astype(bool), "n_steps": st["num_steps"],
           "acceptance_rate": st["accept_prob"], "step_size": st["adapt_state.step_size"],
           "energy": st["energy"], "solver_ok": solver_ok}
    if draws.method == "nuts":  # (ChEES builds no tree)
        out["tree_depth"] = np.floor(np.log2(st["num_steps"])).astype(int) + 1
    return out


def add_chain_counts(idata: az.InferenceData, draws: mcmc.Draws) -> None:
    """Per-chain solver failures (sampling, warmup) and warmup leapfrog steps, into `sample_stats`."""
    idata.sample_stats["solver_failures"] = xr.DataArray(draws.failures, dims=["chain"])
    idata.sample_stats["solver_failures_warmup"] = xr.DataArray(draws.failures_warmup, dims=["chain"])
    idata.sample_stats["warmup_steps"] = xr.DataArray(draws.warmup_steps, dims=["chain"])


def diagnostics(idata: az.InferenceData, draws: mcmc.Draws, wall_s: float) -> dict:
    """`diagnostics.json`: R-hat and ESS over the posterior group's variables (exact conditional draws such
    as the blot scales left out), divergences, solver failures, cost."""
    post = idata.posterior
    chains = post.sizes["chain"]
    var_names = [k for k in post.data_vars if k != "log_scale"]
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
        "chains": chains, "draws": int(post.sizes["draw"]), "sampler": draws.method,
    }
