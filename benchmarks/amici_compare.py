"""Our PEtab log-likelihood and gradient (`pipeline.petab.problem`, JAX/diffrax) against AMICI's (C++/CVODES,
adjoint sensitivities) on the same PEtab problems, side by side.

    pip install -e '.[amici]'                  # AMICI builds its C++ from source (a few minutes, cmake + a C++ compiler)
    python benchmarks/amici_compare.py                                  # every problem of data/petab/
    python benchmarks/amici_compare.py --problems Fujita_SciSignal2010 Weber_BMC2015 --repeats 5
    python benchmarks/amici_compare.py --problems none --export config/config.yaml --export brief

AMICI is never needed by the tests or CI; only this script imports it.

Problems: (b) each folder data/petab/<name>/ with <name>.yaml (--problems: folder names or yaml paths;
'none' for none), and (a) each --export CONFIG: `python -m pipeline export-petab CONFIG` writes the
config's model and dataset as a PEtab problem into a temporary folder (CONFIG 'brief': the brief design's
null dataset, tests/misspecified_model.py, seed 21, as `benchmarks/simulate.py --data brief`).

AMICI: `amici.importers.petab.v1.import_petab_problem` (the model is generated and compiled once per SBML
file into --model-dir and reused), CVODES at rtol = atol = 1e-8 (AMICI's benchmark-collection settings),
first-order adjoint sensitivities, log-likelihood and its gradient on the parameters' parameterScale at the
parameter table's nominal values (`simulate_petab(..., scaled_gradients=True)` with the ExpDatas and the
parameter mapping built once, as an optimiser calls it). Ours: `jax.jit(jax.value_and_grad(ll))` of
`pipeline.petab.problem.log_likelihood` (Rodas5P, reverse mode; pipeline.petab.problem.REFERENCE) at the same
rtol and atol as AMICI unless --ours-rtol/--ours-atol say otherwise, at `problem.x_nominal`, the same point and
scale.

AMICI imports one observable formula per observable: a problem with timepoint-specific observable or noise
parameters (Fiedler) is flattened for AMICI first (`petab.v1.flatten_timepoint_specific_output_overrides`; the
likelihood and the estimated parameters are unchanged).

Printed per problem: llh of both and |diff| (they should agree to 1e-3), gradient wall times in ms (median
of --repeats calls after a warm-up; AMICI's including its Python wrapper, amici_cpu_ms its C++ time alone
as CVODES reports it), ratio = ours_grad_ms / amici_grad_ms, grad_rel = max_i |g_ours_i - g_amici_i| /
max_i |g_amici_i|, and against a reference gradient (AMICI forward sensitivities at rtol = atol = 1e-12)
the same for ours (ours_ref) and AMICI's adjoint (amici_ref): at 1e-8, AMICI's adjoint gradient can be far
off on stiff or ill-conditioned problems, so grad_rel alone does not say which one is wrong. Last the
one-off costs: AMICI's model import + compile (s; ~0 when reused from --model-dir) and our first call
(jit compile, s); ok: every solve of both succeeded (else a<0|1>o<0|1>).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PETAB_DIR = ROOT / "data" / "petab"
RTOL = ATOL = 1e-8
REFERENCE_TOL = (1e-12, 1e-12)  # AMICI forward sensitivities for the reference gradient (--no-reference: none)


def problem_yamls(names: list[str] | None) -> list[Path]:
    if names is None:
        return sorted(d / f"{d.name}.yaml" for d in PETAB_DIR.iterdir() if (d / f"{d.name}.yaml").is_file())
    out = []
    for n in names:
        if n == "none":
            continue
        p = Path(n)
        out.append(p if p.suffix in (".yaml", ".yml") else PETAB_DIR / n / f"{n}.yaml")
    return out


def export(config: str, workdir: Path) -> Path:
    """The PEtab problem.yaml that `pipeline export-petab` writes for CONFIG ('brief': the brief null dataset)."""
    name = "brief" if config == "brief" else Path(config).stem
    if config == "brief":
        sys.path.insert(0, str(ROOT / "tests"))
        import misspecified_model as mm

        data = workdir / "brief_null"
        mm.make_dataset(data, None, 21, mm.brief_design())
        config = str(workdir / "brief.yaml")
        Path(config).write_text(f"analysis: brief\ndataset: {data}\n")
    else:  # PEtab v1 estimates the noise sigmas: export the config's model with them as parameters
        import yaml

        raw = yaml.safe_load(Path(config).read_text())
        raw.setdefault("prior", {})["integrate_sigma"] = False
        raw["dataset"] = str((ROOT / raw["dataset"]).resolve()) if not Path(raw["dataset"]).is_absolute() \
            else raw["dataset"]
        config = str(workdir / f"{name}.yaml")
        Path(config).write_text(yaml.safe_dump(raw))
    out = workdir / f"petab_{name}"
    cmd = [sys.executable, "-m", "pipeline", "export-petab", str(Path(config).resolve()), "--out", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stdout}{run.stderr}")
    print(f"# export {config}: {run.stdout.strip()}", flush=True)
    return out / "problem.yaml"


def amici_side(yaml: Path, name: str, repeats: int, model_dir: Path, rtol: float, atol: float,
               reference: bool) -> dict:
    import petab.v1 as petab
    from petab.v1.lint import (measurement_table_has_timepoint_specific_mappings,
                               observable_table_has_nontrivial_noise_formula)
    from amici.importers.petab.v1 import import_petab_problem
    from amici.sim.sundials import AMICI_SUCCESS, SensitivityMethod, SensitivityOrder
    from amici.sim.sundials.petab.v1 import create_edatas, simulate_petab
    from amici.sim.sundials.petab.v1._parameter_mapping import create_parameter_mapping

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp = petab.Problem.from_yaml(str(yaml))
        flattened = measurement_table_has_timepoint_specific_mappings(  # AMICI's own test (its petab import)
            pp.measurement_df,
            allow_scalar_numeric_noise_parameters=not observable_table_has_nontrivial_noise_formula(pp.observable_df))
        if flattened:  # AMICI imports only one observable/noise formula per observable: one observable per override
            petab.flatten_timepoint_specific_output_overrides(pp)
    digest = hashlib.sha1(b"".join(f.read_bytes() for f in sorted(yaml.parent.iterdir()) if f.is_file()))
    digest = digest.hexdigest()[:10]  # the problem's files: a changed export gets a new model
    model_name = re.sub(r"\W", "_", name)
    t0 = time.perf_counter()
    model = import_petab_problem(pp, model_dir / f"{model_name}_{digest}", model_name=f"{model_name}_{digest}",
                                 verbose=False)
    import_s = time.perf_counter() - t0
    for logger in [n for n in logging.root.manager.loggerDict if n.startswith("amici")]:
        logging.getLogger(logger).setLevel(logging.WARNING)  # its petab modules log every mapping at DEBUG

    def make_solver(method, tol):
        solver = model.create_solver()
        solver.set_relative_tolerance(tol[0])
        solver.set_absolute_tolerance(tol[1])
        solver.set_max_steps(10_000 if method == SensitivityMethod.adjoint else 1_000_000)
        solver.set_sensitivity_order(SensitivityOrder.first)
        solver.set_sensitivity_method(method)
        return solver

    solver = make_solver(SensitivityMethod.adjoint, (rtol, atol))

    conditions = pp.get_simulation_conditions_from_measurement_df()
    mapping = create_parameter_mapping(pp, conditions, scaled_parameters=True, amici_model=model)
    edatas = create_edatas(amici_model=model, petab_problem=pp, simulation_conditions=conditions)

    def call(solver=solver):
        with warnings.catch_warnings():  # adjoint with discontinuities "not thoroughly tested": hence the reference
            warnings.simplefilter("ignore")
            return simulate_petab(pp, amici_model=model, solver=solver, edatas=edatas, parameter_mapping=mapping,
                                  scaled_gradients=True)

    ref = None
    if reference:  # forward sensitivities at tight tolerances: the gradient both are checked against
        r = call(make_solver(SensitivityMethod.forward, REFERENCE_TOL))
        ref = r["sllh"] if all(rd.status == AMICI_SUCCESS for rd in r["rdatas"]) else None
    res = call()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = call()
        wall.append(time.perf_counter() - t0)
        cpu.append(sum(rd.cpu_time_total for rd in res["rdatas"]))  # ms, C++ forward + backward + pre-equilibration
    ok = all(rd.status == AMICI_SUCCESS for rd in res["rdatas"])
    return dict(llh=float(res["llh"]), grad=res["sllh"], ok=ok, ms=1e3 * statistics.median(wall),
                cpu_ms=statistics.median(cpu), import_s=import_s, ref=ref, flattened=flattened)


def ours_side(yaml: Path, repeats: int, tolerances: dict) -> dict:
    import dataclasses

    import jax
    import numpy as np

    from pipeline.petab import problem as petabproblem

    settings = dataclasses.replace(petabproblem.REFERENCE, **tolerances)
    prob = petabproblem.load(yaml)
    f = jax.jit(jax.value_and_grad(lambda x: petabproblem.log_likelihood(prob, x, settings)[0]))
    ok_f = jax.jit(lambda x: petabproblem.log_likelihood(prob, x, settings)[1])
    x = jax.numpy.asarray(prob.x_nominal)
    t0 = time.perf_counter()
    ll, g = jax.block_until_ready(f(x))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ll, g = jax.block_until_ready(f(x))
        times.append(time.perf_counter() - t0)
    return dict(llh=float(ll), grad=dict(zip(prob.x_ids, np.asarray(g, dtype=float))), ok=bool(ok_f(x)),
                ms=1e3 * statistics.median(times), compile_s=compile_s)


COLUMNS = ("problem", "n_x", "llh_amici", "llh_ours", "|diff|", "amici_grad_ms", "amici_cpu_ms", "ours_grad_ms",
           "ratio", "grad_rel", "ours_ref", "amici_ref", "amici_import_s", "ours_compile_s", "ok")
WIDTHS = (26, 4, 16, 16, 9, 13, 12, 12, 7, 9, 9, 9, 14, 14, 5)


def row(cells) -> str:
    return " ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, WIDTHS)))


def relative(g: dict, ref: dict | None, ids: list[str]) -> float:
    """max_i |g_i - ref_i| / max_i |ref_i| over the parameters ids (NaN without ref)."""
    if g is None or ref is None:
        return math.nan
    r = [ref.get(i, 0.0) for i in ids]
    return max(abs(g.get(i, 0.0) - x) for i, x in zip(ids, r)) / max(max(abs(x) for x in r), 1e-300)


def compare(name: str, yaml: Path, args) -> str:
    try:
        a = amici_side(yaml, name, args.repeats, Path(args.model_dir), args.rtol, args.atol, args.reference)
    except Exception as e:  # report and go on to the next problem
        traceback.print_exc()
        return f"{name}: AMICI failed: {type(e).__name__}: {e}"
    try:
        tolerances = {"rtol": args.ours_rtol or args.rtol, "atol": args.ours_atol or args.atol}  # matched by default
        o = ours_side(yaml, args.repeats, tolerances)
    except Exception as e:
        traceback.print_exc()
        return f"{name}: ours failed: {type(e).__name__}: {e} (AMICI llh {a['llh']:.10g}, {a['ms']:.1f} ms)"
    ids = list(o["grad"])
    missing = [i for i in ids if a["grad"] is not None and i not in a["grad"]]
    if missing:
        print(f"# {name}: AMICI has no gradient entry for {missing} (taken as 0)")
    if a["flattened"]:
        print(f"# {name}: timepoint-specific overrides flattened for AMICI (petab.flatten_timepoint_specific_output_"
              "overrides)")
    return row((name, len(ids), f"{a['llh']:.8f}", f"{o['llh']:.8f}", f"{abs(a['llh'] - o['llh']):.1e}",
                f"{a['ms']:.2f}", f"{a['cpu_ms']:.2f}", f"{o['ms']:.2f}", f"{o['ms'] / a['ms']:.2f}",
                f"{relative(o['grad'], a['grad'], ids):.1e}", f"{relative(o['grad'], a['ref'], ids):.1e}",
                f"{relative(a['grad'], a['ref'], ids):.1e}", f"{a['import_s']:.1f}", f"{o['compile_s']:.1f}",
                "yes" if a["ok"] and o["ok"] else f"a{int(a['ok'])}o{int(o['ok'])}"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--problems", nargs="+", help="folder names of data/petab/ or PEtab yaml paths ('none': none); "
                    "default: every problem of data/petab/")
    ap.add_argument("--repeats", type=int, default=5, help="timed gradient calls per tool (median; default 5)")
    ap.add_argument("--export", action="append", default=[], metavar="CONFIG",
                    help="also export CONFIG's model and dataset with `pipeline export-petab` and compare it "
                         "('brief': the brief design's null dataset); repeatable")
    ap.add_argument("--rtol", type=float, default=RTOL, help="AMICI's relative tolerance (default %(default)g)")
    ap.add_argument("--atol", type=float, default=ATOL, help="AMICI's absolute tolerance (default %(default)g)")
    ap.add_argument("--ours-rtol", type=float, help="our relative tolerance (default: AMICI's, --rtol)")
    ap.add_argument("--ours-atol", type=float, help="our absolute tolerance (default: AMICI's, --atol)")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="skip the reference gradient (AMICI forward sensitivities at rtol = atol = 1e-12)")
    ap.add_argument("--model-dir", default=str(Path(tempfile.gettempdir()) / "amici_compare_models"),
                    help="where AMICI's generated models are compiled and reused (default: %(default)s)")
    args = ap.parse_args(argv)

    if shutil.which("swig") is None:  # a venv used without activating it: AMICI's model build needs its swig, cmake
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        import amici
    except ImportError:
        print("AMICI is not installed: pip install -e '.[amici]'", file=sys.stderr)
        return 2
    import jax

    print(f"# amici {amici.__version__} (CVODES, adjoint) rtol={args.rtol:g} atol={args.atol:g}; jax {jax.__version__} "
          f"rtol={args.ours_rtol or args.rtol:g} atol={args.ours_atol or args.atol:g}; repeats {args.repeats}", flush=True)
    todo = [(y.stem, y) for y in problem_yamls(args.problems)]
    workdir = Path(tempfile.mkdtemp(prefix="amici_compare_"))
    for cfg in args.export:
        try:
            todo.append((f"export:{'brief' if cfg == 'brief' else Path(cfg).stem}", export(cfg, workdir)))
        except Exception as e:
            print(f"# export {cfg} failed: {e}", flush=True)
    lines = [row(COLUMNS)]
    for name, yaml in todo:
        line = compare(name, yaml, args)
        print(f"# {line}", flush=True)
        lines.append(line)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
