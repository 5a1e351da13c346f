"""Benchmark of the simulator (`pipeline.model.solver`, `pipeline.model.simulate`): old defaults against new, side by side.

    python benchmarks/simulate.py                          # data/example: old defaults vs new, ratios printed
    python benchmarks/simulate.py --data brief             # the two-line brief design (issue "No false calls")
    python benchmarks/simulate.py --compare "new:" "fwd:adjoint=forward" "k5:solver=Kvaerno5"

Objective (--objective posterior, the default): the log density of the schema's default analysis on the
dataset (every mechanism of `model.shift_mechanisms`, the table's estimated set plus everything a mechanism
may shift, noise sigmas; `pipeline.model.posterior.Model`), at u = 0 (every estimated parameter at its table value,
no shift), and its gradient in all coordinates: what MAP and NUTS evaluate. --objective shared: the
scale-marginalised log-likelihood of the table's estimated parameters, shared by the lines (sigma 0.15).

Printed per setting: forward compile time, forward ms per call, value+gradient compile time and ms per
call (medians of --repeats calls), solver steps summed over conditions (pre-equilibration not counted) and
the worst condition's, the largest relative error of the observables against tests/reference_model.py
(scipy Radau, rtol 1e-10), the gradient's largest difference from the first setting's (relative to its
largest entry), and the ratio of the first setting's times to each one's. Without --compare the settings
are "old" (the defaults before Rodas5P: Kvaerno5 with a Chord stage solver at rtol 1e-6, atol 1e-9) and
"new" (today's `SolverSettings()`). Each spec `name:key=value,...` (SolverSettings fields on top of the
command-line settings) is compiled in turn, then all are timed round-robin, so the machine's load hits
them alike. The last line is `compile_s=<x> forward_ms=<y> grad_ms=<z>` of the last setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import root

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import reference_model as ref  # noqa: E402

from pipeline.blots import dataset, design, ingest  # noqa: E402
from pipeline.model import observation, parameters, simulate, solver
from pipeline.vocabulary import DRUGS, TARGETS  # noqa: E402

SIGMA = 0.15
FIELDS = {f.name: f for f in dataclasses.fields(solver.SolverSettings)}


def parse_args(argv=None):
    d = solver.SolverSettings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "example"),
                    help="a dataset folder, or 'brief': the brief design's null dataset (independent generator, seed 21)")
    ap.add_argument("--objective", default="posterior", choices=("posterior", "shared"))
    ap.add_argument("--solver", default=d.solver, help="Rodas5P, Kvaerno3/4/5")
    ap.add_argument("--root-finder", default=d.root_finder, help="VeryChord, Chord or Newton")
    ap.add_argument("--root-rtol", type=float, default=d.root_rtol)
    ap.add_argument("--root-atol", type=float, default=d.root_atol)
    ap.add_argument("--adjoint", default=d.adjoint, help="checkpoint, forward (gradient by jacfwd) or direct")
    ap.add_argument("--rtol", type=float, default=d.rtol)
    ap.add_argument("--atol", type=float, default=d.atol)
    ap.add_argument("--pcoeff", type=float, default=d.pcoeff)
    ap.add_argument("--icoeff", type=float, default=d.icoeff)
    ap.add_argument("--max-steps", type=int, default=d.max_steps)
    ap.add_argument("--preequilibration", default=d.preequilibration, help="warmup, ptc or event")
    ap.add_argument("--warmup-min", type=float, default=d.warmup_min)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-gradient", action="store_true", help="skip the value+gradient timing")
    ap.add_argument("--no-reference", action="store_true", help="skip the scipy timings")
    ap.add_argument("--compare", nargs="+", metavar="NAME:KEY=VALUE,...", help="several settings, timed round-robin")
    return ap.parse_args(argv)


def _cast(name: str, text: str):
    kind = FIELDS[name].type
    if text == "None":
        return None
    if "bool" in kind:
        return text.lower() in ("1", "true", "yes")
    if "int" in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text


def settings_from(args) -> solver.SolverSettings:
    return solver.SolverSettings(**{k: getattr(args, k) for k in FIELDS if hasattr(args, k)})


def with_spec(base: solver.SolverSettings, spec: str) -> tuple[str, solver.SolverSettings]:
    name, _, body = spec.partition(":")
    changes = dict(kv.split("=", 1) for kv in body.split(",") if kv)
    return name, dataclasses.replace(base, **{k: _cast(k, v) for k, v in changes.items()})


OLD = "old:solver=Kvaerno5,rtol=1e-6,atol=1e-9"  # the defaults before Rodas5P (benchmarks/README.md, run 1)


def dataset_folder(data: str) -> str:
    if data != "brief":
        return data
    import tempfile

    import misspecified_model as mm

    out = Path(tempfile.mkdtemp()) / "brief_null"
    mm.make_dataset(out, None, 21, mm.brief_design())
    return str(out)


def problem(data: str, objective: str):
    """(design, [lines, P] values at the evaluation point, x0, objective(settings) -> (value, ok) function of x)."""
    from pipeline import config
    from pipeline.model import posterior

    ds = ingest.to_xarray(dataset.load(data))
    d = design.from_dataset(ds)
    if objective == "posterior":
        cfg, problems = config.validate({"analysis": "bench", "dataset": data}, "config", "benchmark")
        assert not problems, problems

        def make(settings):
            m = posterior.Model(cfg, d, settings)

            def f(u):
                sim = simulate.simulate(m.line_values(u), d.conditions, d.times, settings)
                value, ok = m.log_density(u)
                return jnp.where(ok, value, -jnp.inf), sim
            return f, m.dim
        x0 = jnp.zeros(make(solver.SolverSettings())[1])
        values = posterior.Model(cfg, d, solver.SolverSettings()).line_values(x0)
        return d, values, x0, make
    table = parameters.table()
    est = jnp.array([i for i, n in enumerate(parameters.names()) if bool(table["estimate"].iloc[i])])
    values = jnp.tile(simulate.nominal_values(), (len(d.lines), 1))
    sigma = jnp.full(len(d.y), SIGMA)

    def make(settings):
        def f(log_theta):
            sim = simulate.simulate(values.at[:, est].set(jnp.exp(log_theta)), d.conditions, d.times, settings)
            pred = design.predictions(sim, d)
            value = observation.marginal_log_likelihood(jnp.log(pred), jnp.log(d.y), d.group, sigma, len(d.groups))
            return jnp.where(jnp.all(sim.ok), value, -jnp.inf), sim
        return f, len(est)
    return d, values, jnp.log(values[0, est]), make


def objectives(make, settings: solver.SolverSettings):
    """Jitted forward simulation and value+gradient (by jacfwd under forward mode)."""
    f, _ = make(settings)
    sim = jax.jit(lambda x: f(x)[1])
    value = lambda x: f(x)[0]  # noqa: E731
    if settings.adjoint == "forward":
        def value_and_grad(x):
            def twice(y):
                v = value(y)
                return v, v
            g, v = jax.jacfwd(twice, has_aux=True)(x)
            return v, g
    else:
        value_and_grad = jax.value_and_grad(value)
    return sim, jax.jit(value_and_grad)


def timed(f, *a):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*a))
    return time.perf_counter() - t0


def reference_run(d, values, rtol: float, atol: float, warmup_min: float, protocol: bool):
    """scipy Radau on every condition. protocol=True: tests/reference_model.simulate as is (per condition,
    its own steady state, rtol 1e-10); False: our protocol (steady state once per line by `warmup_min` of
    integration and a hybr polish, then pretreatment and stimulus) at the given tolerances."""
    lines = [{n: float(v) for n, v in zip(parameters.names(), np.asarray(row))} for row in values]
    stim_names = ["none"] + list(simulate.STIMULUS_ORDER)
    conds = d.conditions
    out = []
    if protocol:
        for c in range(len(conds.line)):
            stim = stim_names[int(np.argmax(np.r_[0.5, np.asarray(conds.stimulus[c])]))]
            doses = {drug: float(x) for drug, x in zip(DRUGS, np.asarray(conds.doses_uM[c])) if x > 0}
            ts, back = np.unique(d.times[c], return_inverse=True)  # scipy wants strictly increasing times
            want = ref.simulate(lines[int(conds.line[c])], stim, doses, float(conds.pretreatment_min[c]), ts)
            out.append(np.stack([want[t][back] for t in TARGETS], -1))
        return np.stack(out)

    def radau(y0, p, L, th, t_end, t_eval=None):
        return solve_ivp(lambda t, y: ref.rhs(y, p, L, th), (0.0, t_end), y0, method="Radau",
                         rtol=rtol, atol=atol, t_eval=t_eval)

    steady = []
    for p in lines:
        th0 = ref.occupancies(p, {})
        y0 = np.zeros(len(ref.STATES))
        y0[ref.IDX["R"]] = y0[ref.IDX["IRS"]] = 1.0
        y_int = radau(y0, p, p["L_b"], th0, warmup_min).y[:, -1]
        steady.append(root(lambda y: ref.rhs(y, p, p["L_b"], th0), y_int, method="hybr", tol=1e-14).x)
    for c in range(len(conds.line)):
        p = lines[int(conds.line[c])]
        doses = {drug: float(x) for drug, x in zip(DRUGS, np.asarray(conds.doses_uM[c])) if x > 0}
        th = ref.occupancies(p, doses)
        y = steady[int(conds.line[c])]
        if conds.pretreatment_min[c] > 0:
            y = radau(y, p, p["L_b"], th, float(conds.pretreatment_min[c])).y[:, -1]
        stim = np.asarray(conds.stimulus[c])
        L = p["L_b"] + sum(w * p[f"s_{s}"] for w, s in zip(stim, simulate.STIMULUS_ORDER))
        ts, back = np.unique(d.times[c], return_inverse=True)
        obs = ref.observables(radau(y, p, L, th, float(ts[-1]), ts).y, p)
        out.append(np.stack([obs[t][back] for t in TARGETS], -1))
    return np.stack(out)


def main(argv=None):
    args = parse_args(argv)
    base = settings_from(args)
    specs = [with_spec(base, s) for s in (args.compare or [OLD, "new:"])]
    data = dataset_folder(args.data)
    d, values, x0, make = problem(data, args.objective)
    print(f"{data}: {len(d.condition_ids)} conditions x {d.times.shape[1]} times, {len(d.lines)} lines, {len(d.y)} "
          f"bands; objective {args.objective} with {len(x0)} coordinates; jax {jax.__version__} on "
          f"{jax.devices()[0].platform}")

    print("scipy reference (tests/reference_model.py, Radau rtol 1e-10) ...", flush=True)
    t0 = time.perf_counter()
    want = reference_run(d, values, ref.RTOL, ref.ATOL, 0.0, protocol=True)
    ref_tight_s = time.perf_counter() - t0

    runs = []
    for name, s in specs:
        print(f"[{name}] {s}", flush=True)
        fwd, vg = objectives(make, s)
        r = {"name": name, "settings": s, "fwd": fwd, "vg": vg, "fwd_t": [], "vg_t": []}
        r["compile_s"] = timed(fwd, x0)
        sim = fwd(x0)
        r["ok"] = bool(sim.ok.all())
        r["steps"] = int(sim.num_steps.sum())
        r["max_steps_cond"] = int(sim.num_steps.max())
        r["err"] = float(np.max(np.abs(np.asarray(sim.observables) - want) / np.abs(want)))
        if not args.no_gradient:
            r["grad_compile_s"] = timed(vg, x0)
            v, g = vg(x0)
            r["value"], r["grad_finite"] = float(v), bool(np.all(np.isfinite(np.asarray(g))))
            r["grad"] = np.asarray(g)
        print(f"  compiled: forward {r['compile_s']:.1f} s" + (
            "" if args.no_gradient else f", value+grad {r['grad_compile_s']:.1f} s"), flush=True)
        runs.append(r)

    for _ in range(args.repeats):  # round-robin, so that load on the machine falls on every variant alike
        for r in runs:
            r["fwd_t"].append(timed(r["fwd"], x0))
            if not args.no_gradient:
                r["vg_t"].append(timed(r["vg"], x0))

    ref_fast_s = None
    if not args.no_reference:
        print(f"scipy Radau at rtol {base.rtol:g} / atol {base.atol:g}, our protocol ...", flush=True)
        t0 = time.perf_counter()
        fast = reference_run(d, values, base.rtol, base.atol, base.warmup_min, protocol=False)
        ref_fast_s = time.perf_counter() - t0
        print(f"  its max rel error vs rtol 1e-10: {np.max(np.abs(fast - want) / np.abs(want)):.2e}")

    g0 = runs[0].get("grad")
    print()
    print(f"{'name':<14} {'compile_s':>9} {'forward_ms':>10} {'grad_compile_s':>14} {'grad_ms':>8} "
          f"{'steps':>6} {'max_cond':>8} {'rel_err':>8} {'ok':>3} {'grad_vs_first':>13} {'fwd_x':>6} {'grad_x':>6}")
    t_fwd0 = statistics.median(runs[0]["fwd_t"])
    t_vg0 = statistics.median(runs[0]["vg_t"]) if runs[0]["vg_t"] else float("nan")
    for r in runs:
        fwd_ms = 1e3 * statistics.median(r["fwd_t"])
        grad_ms = 1e3 * statistics.median(r["vg_t"]) if r["vg_t"] else float("nan")
        gdiff = (float(np.max(np.abs(r["grad"] - g0)) / np.max(np.abs(g0))) if g0 is not None else float("nan"))
        r["fwd_ms"], r["grad_ms"] = fwd_ms, grad_ms
        print(f"{r['name']:<14} {r['compile_s']:>9.1f} {fwd_ms:>10.1f} {r.get('grad_compile_s', float('nan')):>14.1f} "
              f"{grad_ms:>8.1f} {r['steps']:>6d} {r['max_steps_cond']:>8d} {r['err']:>8.1e} {'y' if r['ok'] else 'n':>3} "
              f"{gdiff:>13.1e} {t_fwd0 / (fwd_ms / 1e3):>6.2f} {t_vg0 / (grad_ms / 1e3):>6.2f}")
    print(f"(fwd_x, grad_x: how many times faster than {runs[0]['name']})")
    first, last = runs[0], runs[-1]
    print()
    print(f"scipy reference, Radau rtol 1e-10 (reference_model.simulate per condition): {1e3 * ref_tight_s:.0f} ms; "
          f"ratio to JAX forward: {1e3 * ref_tight_s / first['fwd_ms']:.1f}x")
    if ref_fast_s is not None:
        print(f"scipy Radau rtol {base.rtol:g} / atol {base.atol:g}, steady state once per line: {1e3 * ref_fast_s:.0f} ms; "
              f"ratio to JAX forward: {1e3 * ref_fast_s / first['fwd_ms']:.1f}x")
    print(f"compile_s={last['compile_s']:.1f} forward_ms={last['fwd_ms']:.1f} grad_ms={last['grad_ms']:.1f}")


if __name__ == "__main__":
    main()
