"""What the `predict` and `design` stages cost: posterior draws x candidate treatments, on this machine.

    python benchmarks/predict.py                                   # 1000 draws x 100 treatments, 2 lines
    python benchmarks/predict.py --draws 200 1000 --lines 3 --design-draws 400

Draws: the parameter table's values jittered (log-normal, sd 0.1) in a parental and resistant lines (IC50_MK2206 x
30), as many as asked; what a draw costs does not depend on where it came from. Treatments: the default
candidates of the schema (vehicle, every drug of pipeline/data/drugs.csv over its dose grid, every pair at middle
doses: 77 with the bundled table), topped up to --treatments with pairs at other doses. Times: the schema's
default read-out times (60 and 1440 min). Printed per draw count: compile s (first call), wall s of the
simulations, ms per simulated condition (a line under a treatment), draws per s, and the design stage's
scoring time for its default experiment set (every treatment x the example's five targets at its five
times, 2 replicates) at --design-draws draws.
"""

from __future__ import annotations

import argparse
import itertools
import time

import jax
import numpy as np

from pipeline import vocabulary as v
from pipeline.decide import design, predict, treatments as tr
from pipeline.model import parameters


def draws(n: int, lines: int, seed: int = 0) -> np.ndarray:
    names = parameters.names()
    base = np.array([parameters.nominal()[k] for k in names])
    kinetic = np.array([not parameters.is_fraction(k) for k in names])
    rng = np.random.default_rng(seed)
    out = np.empty((n, lines, len(base)))
    for i in range(n):
        out[i] = base * np.exp(0.1 * rng.standard_normal(len(base)) * kinetic)
        out[i, 1:, names.index("IC50_MK2206")] *= 30.0
    return out


def candidates(n: int) -> list[dict]:
    cfg = {"drugs": None, "doses_uM": {}, "pairs": "middle", "treatments": []}
    out = tr.candidates(cfg)
    names = {tr.name(t) for t in out}
    for a, b in itertools.combinations(v.DRUGS, 2):  # top up with pairs at their grids' first doses
        for x, y in itertools.product(tr.grid(a, cfg), tr.grid(b, cfg)):
            if len(out) >= n:
                return out[:n]
            if tr.name({a: x, b: y}) not in names:
                out.append({a: x, b: y})
    return out[:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, nargs="+", default=[1000])
    ap.add_argument("--treatments", type=int, default=100)
    ap.add_argument("--lines", type=int, default=2)
    ap.add_argument("--design-draws", type=int, default=400)
    args = ap.parse_args(argv)
    cands = candidates(args.treatments)
    times = [60.0, 1440.0]
    print(f"# jax {jax.__version__} on {jax.default_backend()}; {len(cands)} treatments x {args.lines} lines; "
          f"times {times}; batch {predict.batch_size()} draws")
    t0 = time.perf_counter()
    predict.simulate_draws(draws(predict.batch_size(), args.lines), cands, times, "IGF1", 60.0)
    compile_s = time.perf_counter() - t0
    print("draws  compile_s  wall_s  ms_per_condition  draws_per_s  solver_failures")
    for n in args.draws:
        vals = draws(n, args.lines, seed=n)
        t0 = time.perf_counter()
        _, ok = predict.simulate_draws(vals, cands, times, "IGF1", 60.0)
        wall = time.perf_counter() - t0
        print(f"{n:5d}  {compile_s:9.1f}  {wall:6.1f}  {1e3 * wall / (n * args.lines * len(cands)):16.3f}  "
              f"{n / wall:11.2f}  {int((~ok).sum()):15d}", flush=True)
    # design: score every treatment x 5 targets of simulated bands (2 lines x 5 times x 2 replicates)
    d = args.design_draws
    rng = np.random.default_rng(1)
    log_h = rng.normal(0.0, 0.3, (len(cands) * 5, d, 2 * 5 * 2))
    labels = ["a"] * (d // 2) + ["b"] * (d - d // 2)
    t0 = time.perf_counter()
    design.rank(log_h, np.full(d, 0.15), labels, jax.random.PRNGKey(0))
    print(f"design scoring: {len(log_h)} experiments x {d} draws (nested Monte Carlo, {d}^2 pairs each): "
          f"{time.perf_counter() - t0:.1f} s with its compile")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
