"""Benchmark of Pathfinder (blackjax) as the sampler's starting geometry, against the MAP's Laplace approximation.

    python benchmarks/pathfinder.py config/config.yaml --paths 8 --maxiter 60 --elbo-draws 20

On one posterior (a config, as `sampling.py` takes it): the config's multi-start MAP with its finite-difference
Hessian (the fit stage's path), then multi-path Pathfinder (Zhang et al. 2022: L-BFGS from prior draws, the
normal approximation of highest ELBO along each path) from as many prior draws. Printed: the wall time and
log-density evaluations of each, the best log density each reached, the marginal sds of the two
approximations (ratio Pathfinder / Laplace per coordinate), and, with --nuts, NUTS draws (the config's
`sampler:`, mass kept: `adapt_mass: false`) with each approximation as the mass matrix, side by side
(steps per iteration, ESS per 1000 gradients, max R-hat), from the same MAP starting points.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import blackjax
import blackjax.optimizers.lbfgs
import jax
import jax.numpy as jnp
import numpy as np

from pipeline import fit
from pipeline.blots import dataset, ingest
from pipeline.inference import engine, optimize

sys.path.insert(0, str(Path(__file__).parent))
from sampling import load_config, summary  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--paths", type=int, default=8)
    ap.add_argument("--maxiter", type=int, default=60)
    ap.add_argument("--maxls", type=int, default=20, help="line-search steps per L-BFGS iteration (blackjax: 1000)")
    ap.add_argument("--elbo-draws", type=int, default=20, help="draws per point of a path for its ELBO")
    ap.add_argument("--nuts", action="store_true", help="also sample with each approximation as the mass matrix")
    args = ap.parse_args(argv)
    config = load_config(args.config, args.set)
    m = fit.model(config, ingest.to_xarray(dataset.load(config["dataset"])))
    print(f"{config['dataset']}: {m.dim} coordinates", flush=True)

    t0 = time.perf_counter()
    map_result = engine.map_fits(m, config, lambda u: {}, log=lambda s: None)
    t_map = time.perf_counter() - t0
    stats = map_result["start_statistics"]
    laplace = optimize.inverse_mass(np.array(map_result["hessian_at_best"]))  # (floored, as the sampler takes it)
    print(f"MAP: {t_map:.0f} s (compile included), {stats['gradient_batches']} gradient batches of "
          f"{config['map']['starts']} starts, best log density {map_result['fits'][0]['log_posterior']:.3f}",
          flush=True)

    def log_density(u):
        lp, ok = m.log_density(u)
        return jnp.where(ok & jnp.isfinite(lp), lp, -jnp.inf)

    def one_path(key, u0):
        k_run, _ = jax.random.split(key)
        state, info = blackjax.vi.pathfinder.approximate(k_run, log_density, u0, num_samples=args.elbo_draws,
                                                         maxiter=args.maxiter, maxls=args.maxls)
        return state, jnp.sum(jnp.isfinite(info.path.elbo))

    keys = jax.random.split(engine.key(config, engine.STAGE_MAP), args.paths)
    starts = jax.vmap(m.prior_draw)(keys)
    t0 = time.perf_counter()
    states, points = jax.block_until_ready(jax.jit(jax.vmap(one_path))(keys, starts))
    t_pf = time.perf_counter() - t0
    best = int(jnp.argmax(states.elbo))
    state = jax.tree.map(lambda x: x[best], states)
    cov = np.asarray(blackjax.optimizers.lbfgs.lbfgs_inverse_hessian_formula_1(state.alpha, state.beta, state.gamma))
    lp_pf = float(log_density(state.position))
    print(f"Pathfinder: {t_pf:.0f} s (compile included), {args.paths} paths x <= {args.maxiter} L-BFGS steps, "
          f"{int(np.sum(points))} path points with an ELBO ({args.elbo_draws} draws each: "
          f"{int(np.sum(points)) * args.elbo_draws} log-density evaluations besides the L-BFGS ones); "
          f"ELBO per path {np.round(np.asarray(states.elbo), 2).tolist()}; best path's point log density "
          f"{lp_pf:.3f}", flush=True)
    sd_lap, sd_pf = np.sqrt(np.diag(laplace)), np.sqrt(np.clip(np.diag(cov), 0, None))
    print(f"{'coordinate':<40} {'Laplace sd':>10} {'Pathfinder sd':>13} {'ratio':>6}")
    for c, a, b in zip(m.coords, sd_lap, sd_pf):
        print(f"{c:<40} {a:>10.3f} {b:>13.3f} {b / a:>6.2f}")
    ratio = sd_pf / sd_lap
    print(f"sd ratio Pathfinder / Laplace: median {np.median(ratio):.2f}, range {ratio.min():.2f}-{ratio.max():.2f}")
    if not args.nuts:
        return 0
    rows = []
    for name, hessian in (("laplace", map_result["hessian_at_best"]), ("pathfinder", np.linalg.inv(cov).tolist())):
        cfg = copy.deepcopy(config)
        cfg["sampler"]["adapt_mass"] = False
        result = {**map_result, "hessian_at_best": hessian}
        draws = engine.sample(m, cfg, result, log=lambda s: None)
        rows.append((name, summary(draws, np.ones(m.dim, dtype=bool))))
    print(f"\n{'mass':<12} {'warmup_s':>8} {'sample_s':>8} {'grads':>7} {'steps/it':>8} {'ESS/kgrad':>9} "
          f"{'max_rhat':>8} {'bulk':>6} {'tail':>6} {'div':>4}")
    for name, r in rows:
        print(f"{name:<12} {r['wall_warmup_s']:>8.0f} {r['wall_sampling_s']:>8.0f} {r['grads']:>7d} "
              f"{r['steps_per_iter']:>8.1f} {r['ess_per_kgrad']:>9.2f} {r['max_rhat']:>8.3f} {r['min_bulk']:>6.0f} "
              f"{r['min_tail']:>6.0f} {r['divergences']:>4d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
