"""Benchmark of `pipeline.simulate` on the example dataset, against a scipy Radau reference.

    python benchmarks/simulate.py                        # the default SolverSettings
    python benchmarks/simulate.py --root-finder VeryChord --repeats 5
    python benchmarks/simulate.py --compare "chord:" "verychord:root_finder=VeryChord" "fwd:adjoint=forward"

All conditions of data/example are simulated in one vmapped call, with one parameter row per cell
line and the parameter table's estimated parameters as log-parameters. Printed: forward compile time,
forward time per call, value+gradient compile time and time per call of the scale-marginalised
log-likelihood (sigma 0.15), each time per call the median of --repeats calls; solver steps; the
largest relative error of the observables against tests/reference_model.py (Radau, rtol 1e-10);
and the scipy reference's time at its own tolerances and at ours. The last line is
`compile_s=<x> forward_ms=<y> grad_ms=<z>`.

With --compare, each spec `name:key=value,...` (SolverSettings fields on top of the command-line
settings) is compiled in turn and then all are timed round-robin, so the machine's load hits them alike;
the last line then belongs to the first spec.
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

from pipeline import dataset, design, ingest, observation, parameters, simulate  # noqa: E402
from pipeline.vocabulary import DRUGS, TARGETS  # noqa: E402

SIGMA = 0.15
FIELDS = {f.name: f for f in dataclasses.fields(simulate.SolverSettings)}


def parse_args(argv=None):
    d = simulate.SolverSettings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "example"))
    ap.add_argument("--solver", default=d.solver, help="Kvaerno3/4/5 (KenCarp needs a MultiTerm split)")
    ap.add_argument("--root-finder", default=d.root_finder, help="VeryChord, Chord or Newton")
    ap.add_argument("--root-rtol", type=float, default=d.root_rtol)
    ap.add_argument("--root-atol", type=float, default=d.root_atol)
    ap.add_argument("--adjoint", default=d.adjoint, help="checkpoint, forward (gradient by jacfwd) or direct")
    ap.add_argument("--rtol", type=float, default=d.rtol)
    ap.add_argument("--atol", type=float, default=d.atol)
    ap.add_argument("--pcoeff", type=float, default=d.pcoeff)
    ap.add_argument("--icoeff", type=float, default=d.icoeff)
    ap.add_argument("--max-steps", type=int, default=d.max_steps)
    ap.add_argument("--preequilibration", default=d.preequilibration, help="warmup or ptc")
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


def settings_from(args) -> simulate.SolverSettings:
    return simulate.SolverSettings(**{k: getattr(args, k) for k in FIELDS if hasattr(args, k)})


def with_spec(base: simulate.SolverSettings, spec: str) -> tuple[str, simulate.SolverSettings]:
    name, _, body = spec.partition(":")
    changes = dict(kv.split("=", 1) for kv in body.split(",") if kv)
    return name, dataclasses.replace(base, **{k: _cast(k, v) for k, v in changes.items()})


def problem(data: str):
    d = design.from_dataset(ingest.to_xarray(dataset.load(data)))
    table = parameters.table()
    est = jnp.array([i for i, n in enumerate(parameters.names()) if bool(table["estimate"].iloc[i])])
    values = jnp.tile(simulate.nominal_values(), (len(d.lines), 1))
    return d, values, est


def objectives(d, values, est, settings: simulate.SolverSettings):
    """Jitted forward simulation, log-likelihood value+gradient (by jacfwd under forward mode), steps."""
    sigma = jnp.full(len(d.y), SIGMA)

    def sim(log_theta):
        return simulate.simulate(values.at[:, est].set(jnp.exp(log_theta)), d.conditions, d.times, settings)

    def llh(log_theta):
        s = sim(log_theta)
        pred = design.predictions(s, d)
        value = observation.marginal_log_likelihood(jnp.log(pred), jnp.log(d.y), d.group, sigma, len(d.groups))
        return jnp.where(jnp.all(s.ok), value, -jnp.inf)

    if settings.adjoint == "forward":
        def value_and_grad(x):
            def twice(y):
                v = llh(y)
                return v, v
            g, v = jax.jacfwd(twice, has_aux=True)(x)
            return v, g
    else:
        value_and_grad = jax.value_and_grad(llh)
    return jax.jit(lambda x: sim(x)), jax.jit(value_and_grad)


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
    specs = [with_spec(base, s) for s in args.compare] if args.compare else [("settings", base)]
    d, values, est = problem(args.data)
    x0 = jnp.log(values[0, est])
    print(f"{len(d.condition_ids)} conditions x {d.times.shape[1]} times, {len(d.lines)} lines, {len(est)} "
          f"log-parameters, {len(d.y)} bands; jax {jax.__version__} on {jax.devices()[0].platform}")

    print("scipy reference (tests/reference_model.py, Radau rtol 1e-10) ...", flush=True)
    t0 = time.perf_counter()
    want = reference_run(d, values, ref.RTOL, ref.ATOL, 0.0, protocol=True)
    ref_tight_s = time.perf_counter() - t0

    runs = []
    for name, s in specs:
        print(f"[{name}] {s}", flush=True)
        fwd, vg = objectives(d, values, est, s)
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
          f"{'steps':>6} {'max_cond':>8} {'rel_err':>8} {'ok':>3} {'grad_vs_first':>13}")
    for r in runs:
        fwd_ms = 1e3 * statistics.median(r["fwd_t"])
        grad_ms = 1e3 * statistics.median(r["vg_t"]) if r["vg_t"] else float("nan")
        gdiff = (float(np.max(np.abs(r["grad"] - g0)) / np.max(np.abs(g0))) if g0 is not None else float("nan"))
        r["fwd_ms"], r["grad_ms"] = fwd_ms, grad_ms
        print(f"{r['name']:<14} {r['compile_s']:>9.1f} {fwd_ms:>10.1f} {r.get('grad_compile_s', float('nan')):>14.1f} "
              f"{grad_ms:>8.1f} {r['steps']:>6d} {r['max_steps_cond']:>8d} {r['err']:>8.1e} {'y' if r['ok'] else 'n':>3} "
              f"{gdiff:>13.1e}")
    first = runs[0]
    print()
    print(f"scipy reference, Radau rtol 1e-10 (reference_model.simulate per condition): {1e3 * ref_tight_s:.0f} ms; "
          f"ratio to JAX forward: {1e3 * ref_tight_s / first['fwd_ms']:.1f}x")
    if ref_fast_s is not None:
        print(f"scipy Radau rtol {base.rtol:g} / atol {base.atol:g}, steady state once per line: {1e3 * ref_fast_s:.0f} ms; "
              f"ratio to JAX forward: {1e3 * ref_fast_s / first['fwd_ms']:.1f}x")
    print(f"compile_s={first['compile_s']:.1f} forward_ms={first['fwd_ms']:.1f} grad_ms={first['grad_ms']:.1f}")


if __name__ == "__main__":
    main()
