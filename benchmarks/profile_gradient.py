"""Where the log density's gradient spends its time: the default analysis's value + gradient split into its
phases, each timed as its own compiled program on the same point.

    python benchmarks/profile_gradient.py [--data data/example | brief] [--repeats 5]

Programs (all at u = 0 of `pipeline.model.posterior.Model`, the schema's default analysis, default solver):
`steady`: the starved steady state of every line (warm start + Newton, implicit-function gradient), summed;
`pretreat`: steady state + the pretreatment solve of every condition (drugs on, no stimulus), summed;
`full`: the whole log density (steady state, pretreatment, stimulus with the saved times, observation model).
Printed per program: compile s, forward ms and value+gradient ms (medians), and each phase's share of the full
gradient by difference (steady; pretreat - steady; full - pretreat), and the gradient / forward cost ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import simulate as bench  # noqa: E402  (benchmarks/simulate.py)

from pipeline import config  # noqa: E402
from pipeline.blots import dataset, design, ingest  # noqa: E402
from pipeline.model import network, posterior, simulate, solver  # noqa: E402


def programs(data: str):
    ds = ingest.to_xarray(dataset.load(data))
    d = design.from_dataset(ds)
    cfg, problems = config.validate({"analysis": "bench", "dataset": data}, "config", "benchmark")
    assert not problems, problems
    settings = solver.SolverSettings()
    m = posterior.Model(cfg, d, settings)
    conds = d.conditions

    def steady(u):
        ps = jax.vmap(network.as_dict)(m.line_values(u))
        y, ok = jax.vmap(lambda p: simulate.steady_state(p, settings))(ps)
        return jnp.sum(y)

    def pretreat(u):
        ps = jax.vmap(network.as_dict)(m.line_values(u))
        y_ss, _ = jax.vmap(lambda p: simulate.steady_state(p, settings))(ps)
        p_c = jax.tree_util.tree_map(lambda a: a[conds.line], ps)

        def one(p, y0, doses, pre):
            th = network.occupancies(p, doses)
            sol = solver.solve(network.vector_field, y0, -pre, 0.0, (p, p["L_b"], th), diffrax.SaveAt(t1=True),
                               settings)
            return jnp.sum(sol.ys[-1])
        return jnp.sum(jax.vmap(one)(p_c, y_ss[conds.line], conds.doses_uM, conds.pretreatment_min))

    def full(u):
        return m.log_density(u)[0]

    return m.dim, {"steady": steady, "pretreat": pretreat, "full": full}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/example")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    dim, progs = programs(bench.dataset_folder(args.data))
    u = jnp.zeros(dim)
    print(f"# jax {jax.__version__} {jax.default_backend()}; {args.data}, default analysis, {dim} coordinates")
    rows = {}
    for name, f in progs.items():
        fwd, vg = jax.jit(f), jax.jit(jax.value_and_grad(f))
        t0 = time.perf_counter()
        jax.block_until_ready(fwd(u))
        c_fwd = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(vg(u))
        c_vg = time.perf_counter() - t0
        rows[name] = {"compile_fwd": c_fwd, "compile_vg": c_vg, "fwd": [], "vg": [], "f": (fwd, vg)}
    for _ in range(args.repeats):  # round-robin: the machine's load falls on all alike
        for r in rows.values():
            r["fwd"].append(bench.timed(r["f"][0], u))
            r["vg"].append(bench.timed(r["f"][1], u))
    print("program   compile_fwd_s  compile_grad_s  fwd_ms  grad_ms  grad/fwd")
    med = {}
    for name, r in rows.items():
        fwd, vg = 1e3 * statistics.median(r["fwd"]), 1e3 * statistics.median(r["vg"])
        med[name] = (fwd, vg)
        print(f"{name:9s} {r['compile_fwd']:13.1f} {r['compile_vg']:15.1f} {fwd:7.1f} {vg:8.1f} {vg / fwd:9.2f}")
    full = med["full"][1]
    shares = {"steady state": med["steady"][1], "pretreatment": med["pretreat"][1] - med["steady"][1],
              "stimulus + observation": full - med["pretreat"][1]}
    print("share of the full value+gradient: " + ", ".join(f"{k} {100 * x / full:.0f} %" for k, x in shares.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
