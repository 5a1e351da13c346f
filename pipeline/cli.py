"""Command line: `python -m pipeline <command> ...`, one command per pipeline step.

Only this module reads arguments and prints. Bad input is reported as one line per
problem on stderr (file, row, column, value, fix) with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

import yaml

from pipeline.problems import ERROR, InputError, Problem

EXIT_BAD_INPUT = 2

# XLA's C++ log prints harmless "algebraic simplifier is likely stuck" lines at ERROR level while
# compiling the stiff solver; real failures still surface as Python errors. Set it to 0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# A fit needs little GPU memory: JAX's default of preallocating 75 % of it would keep a second job off the GPU.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# JAX's persistent compilation cache: every command (and every Snakemake job) compiles the same solver code;
# the second one loads it. Set JAX_COMPILATION_CACHE_DIR to move it, or to "" to switch it off.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "pipeline" / "jax"))


def main(argv: list[str] | None = None) -> int:
    from pipeline.outputs import provenance

    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        with provenance.running(shlex.join(["python", "-m", "pipeline", *argv])):  # what made the outputs
            return args.run(args)
    except InputError as e:
        _report(e.problems, f"{args.command}: nothing written")
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("validate", help="check a blot dataset folder and report every problem (writes nothing)")
    p.add_argument("dataset", help="dataset folder (dataset.yaml, conditions.csv, measurements.csv)")
    p.set_defaults(run=_validate)

    p = sub.add_parser("ingest", help="validate a dataset and write it as a labelled NetCDF file")
    p.add_argument("dataset", help="dataset folder")
    p.add_argument("--out", required=True, help="NetCDF file to write, e.g. results/example/data.nc")
    p.set_defaults(run=_ingest)

    p = sub.add_parser("simulate", help="simulate the dataset's conditions with the config's model variant")
    p.add_argument("config", help="config/<analysis>.yaml")
    p.add_argument("--out", required=True, help="NetCDF of trajectories, e.g. results/example/simulation.nc")
    p.add_argument("--plot", required=True, help="figure, e.g. results/example/simulation.png")
    p.add_argument("--data", help="the ingested dataset (NetCDF from `ingest`); default: read the config's dataset")
    p.set_defaults(run=_simulate)

    p = sub.add_parser("simulate-dataset", help="simulate a blot dataset (format v1) from a spec, with its truth")
    p.add_argument("spec", help="spec YAML (see data/specs/ and pipeline/schemas/simulation.schema.yaml)")
    p.add_argument("--out", required=True, help="dataset folder to write (replaced atomically if it exists)")
    p.set_defaults(run=_simulate_dataset)

    p = sub.add_parser("fit-map", help="multi-start MAP fits of the config's model to the dataset (map.json)")
    p.add_argument("config", help="config/<analysis>.yaml")
    p.add_argument("--data", help="the ingested dataset, e.g. results/example/data.nc (not for a `petab:` config)")
    p.add_argument("--variant", default="base", help="fit this model variant of the config's `variants` "
                   "(default: base, the config's own model)")
    p.add_argument("--out", required=True, help="JSON to write, e.g. results/example/map.json")
    p.set_defaults(run=_fit_map)

    p = sub.add_parser("fit", aliases=["fit-nuts"],
                       help="the posterior from the best MAP fits (the config's `sampler:`): mechanism shifts, "
                            "diagnostics (`fit-nuts`: its deprecated name)")
    p.add_argument("config", help="config/<analysis>.yaml")
    p.add_argument("--data", help="the ingested dataset, e.g. results/example/data.nc (not for a `petab:` config)")
    p.add_argument("--variant", default="base", help="fit this model variant of the config's `variants` "
                   "(default: base, the config's own model)")
    p.add_argument("--map", required=True, help="the fit-map output, e.g. results/example/map.json")
    p.add_argument("--posterior", required=True, help="ArviZ NetCDF to write, e.g. results/example/posterior.nc")
    p.add_argument("--shifts", help="CSV to write, e.g. results/example/shifts.csv (a `petab:` config: the "
                   "posterior summary of each estimated parameter)")
    p.add_argument("--plot", help="a `petab:` config: posterior-predictive figure against the data, e.g. "
                   "results/fujita2010/predictive.png")
    p.add_argument("--diagnostics", required=True, help="JSON to write, e.g. results/example/diagnostics.json")
    p.add_argument("--checkpoint", help="where the sampler saves its state every `sampler.checkpoint_every` draws "
                   "and resumes from after a kill (default: <posterior>.checkpoint; deleted once the outputs are "
                   "written)")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                   help="the most chain worker processes (`chain_method: processes`; auto takes them when this is "
                   "over 1), e.g. a Snakemake rule's {threads} (default: the CPU's cores)")
    p.set_defaults(run=_fit)

    p = sub.add_parser("predict", help="posterior predictions of candidate treatments per cell line, and which "
                       "reverse resistance (predictions.nc, reversal.csv)")
    p.add_argument("config", help="config/<analysis>.yaml (its `predict:` section)")
    p.add_argument("--data", required=True, help="the ingested dataset, e.g. results/example/data.nc")
    p.add_argument("--posterior", required=True, help="the fit's posterior, e.g. results/example/posterior.nc")
    p.add_argument("--out", required=True, help="NetCDF to write, e.g. results/example/predictions.nc")
    p.add_argument("--reversal", required=True, help="CSV to write, e.g. results/example/reversal.csv")
    p.set_defaults(run=_predict)

    p = sub.add_parser("design", help="rank candidate next blots by what they would tell about the mechanism "
                       "(design.csv)")
    p.add_argument("config", help="config/<analysis>.yaml (its `design:` and `predict:` sections)")
    p.add_argument("--data", required=True, help="the ingested dataset, e.g. results/example/data.nc")
    p.add_argument("--posterior", required=True, help="the fit's posterior, e.g. results/example/posterior.nc")
    p.add_argument("--out", required=True, help="CSV to write, e.g. results/example/design.csv")
    p.set_defaults(run=_design)

    p = sub.add_parser("summarise", help="the shifts table of a blot fit from its posterior, with the config's "
                       "`summary:` threshold (shifts.csv; refitting is not needed to change the threshold)")
    p.add_argument("config", help="config/<analysis>.yaml (its `summary:` section)")
    p.add_argument("--posterior", required=True, help="the fit's posterior, e.g. results/example/posterior.nc")
    p.add_argument("--out", required=True, help="CSV to write, e.g. results/example/shifts.csv")
    p.set_defaults(run=_summarise)

    p = sub.add_parser("summarise-analyses", help="the top mechanisms of every resistant line of several analyses "
                       "in one table (results/analyses.csv)")
    p.add_argument("tables", nargs="+", metavar="ANALYSIS=SHIFTS",
                   help="an analysis and its shifts.csv, e.g. example=results/example/shifts.csv")
    p.add_argument("--top", type=int, default=3, help="rows per analysis and cell line (default 3)")
    p.add_argument("--out", required=True, help="CSV to write, e.g. results/analyses.csv")
    p.set_defaults(run=_summarise_analyses)

    p = sub.add_parser("shifts", help="print the most probably shifted mechanisms per resistant line")
    p.add_argument("shifts", help="shifts.csv written by fit")
    p.add_argument("--top", type=int, default=3, help="rows per cell line (default 3)")
    p.set_defaults(run=_shifts)

    p = sub.add_parser("petab-llh", help="log-likelihood of a PEtab v1 problem at its parameter table's nominal values")
    p.add_argument("problem", help="the PEtab problem's YAML file")
    p.add_argument("--rtol", type=float, help="solver relative tolerance (default 1e-10)")
    p.add_argument("--atol", type=float, help="solver absolute tolerance (default 1e-12)")
    p.add_argument("--max-steps", type=int, help="most steps of one solve (default 8192)")
    p.set_defaults(run=_petab_llh)

    p = sub.add_parser("export-petab", help="write the config's model and dataset as a PEtab v1 problem")
    p.add_argument("config", help="config/<analysis>.yaml (with a `dataset:`)")
    p.add_argument("--out", required=True, help="folder to write (replaced atomically), e.g. results/example/petab")
    p.add_argument("--map", help="map.json of the same config: export the best MAP fit's values (default: the "
                   "prior medians, no shifts)")
    p.set_defaults(run=_export_petab)

    p = sub.add_parser("report", help="write results/<analysis>/report.html and its figures from the fit's outputs")
    p.add_argument("analysis", help="the analysis name (the config's `analysis`)")
    p.add_argument("--config", help="its config (default config/<analysis>.yaml)")
    p.add_argument("--results", help="the folder of its fit outputs (default results/<analysis>)")
    p.set_defaults(run=_report_command)

    p = sub.add_parser("compare", help="rank model variants by PSIS-LOO (compare.csv) from their posterior.nc")
    p.add_argument("posteriors", nargs="+", metavar="VARIANT=POSTERIOR",
                   help="a name and its posterior.nc, e.g. full=results/example/posterior.nc")
    p.add_argument("--out", required=True, help="CSV to write, e.g. results/example/compare.csv")
    p.set_defaults(run=_compare)

    p = sub.add_parser("config", help="check an analysis config and print it with its defaults filled")
    p.add_argument("config", help="config/<analysis>.yaml")
    p.set_defaults(run=_config)
    return parser


def _validate(args) -> int:
    from pipeline.blots import dataset

    data = dataset.load(args.dataset)
    _report(list(data.warnings))
    print(_summary(data))
    return 0


def _ingest(args) -> int:
    from pipeline import api
    from pipeline.blots import dataset
    from pipeline.outputs.files import write_all

    if Path(args.out).is_dir():
        raise InputError([Problem(args.out, "is a folder", fix="give a file path for --out, e.g. results/example/data.nc")])
    data = dataset.load(args.dataset)
    _report(list(data.warnings))
    write_all({args.out: api.load_dataset(data)})
    print(f"{_summary(data)}\nwrote {args.out}")
    return 0


def _simulate(args) -> int:
    from pipeline import api
    from pipeline.model import trajectories
    from pipeline.outputs.files import write_all

    cfg = api.load_config(args.config)
    data = api.read_dataset(args.data) if args.data else api.load_dataset(cfg["dataset"])
    traj = api.simulate(cfg, data)
    failed = [str(c) for c, ok in zip(traj.condition.values, traj.ok.values) if not ok]
    if failed:
        print(f"warning: the solver failed for {len(failed)} condition(s): {', '.join(failed)}", file=sys.stderr)
    write_all({args.out: traj, args.plot: trajectories.plot(traj, data)})
    print(f"simulated {traj.sizes['condition']} conditions x {traj.sizes['time_min']} times\n"
          f"wrote {args.out} and {args.plot}")
    return 0


def _simulate_dataset(args) -> int:
    from pipeline.blots import dataset
    from pipeline.model import synthetic
    from pipeline.outputs.files import atomic_dir

    spec = synthetic.load_spec(args.spec)
    with atomic_dir(args.out) as tmp:
        synthetic.write(spec, tmp)
        dataset.load(tmp)  # what we write must pass our own validation
    print(f"{_summary(dataset.load(args.out))}\nwrote {args.out} (truth in truth.yaml, truth_parameters.csv)")
    return 0


def _fit_map(args) -> int:
    from pipeline import api
    from pipeline.outputs.files import write_json

    cfg = api.load_config(args.config, args.variant)
    result = api.fit_map(cfg, None if "petab" in cfg else _dataset(args), log=_log)
    if not result["fits"]:
        print(f"fit-map: every one of {cfg['map']['starts']} starts failed; nothing written. Check the solver "
              "settings and the priors of the estimated parameters.", file=sys.stderr)
        return 1
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0


def _dataset(args):
    from pipeline import api

    if not args.data:
        raise InputError([Problem(args.config, "names a dataset", fix=f"give the ingested dataset: {args.command} "
                                  f"{args.config} --data results/<analysis>/data.nc ...")])
    return api.read_dataset(args.data)


def _fit(args) -> int:
    from pipeline import api, fit

    if args.command == "fit-nuts":
        print("fit-nuts is deprecated: the command is now `fit` (same arguments)", file=sys.stderr)
    from pipeline.inference import checkpoint

    cfg = api.load_config(args.config, args.variant)
    saves = args.checkpoint or f"{args.posterior}.checkpoint"
    result = api.fit_posterior(cfg, None if "petab" in cfg else _dataset(args), args.map,
                               checkpoint=saves, workers=args.workers, log=_log)
    # --shifts: the workflow writes a blot fit's table in its own stage, `summarise`; --plot: a PEtab problem's
    written = result.save(posterior=args.posterior, table=args.shifts, diagnostics=args.diagnostics, plot=args.plot)
    checkpoint.remove(saves)  # (only once posterior.nc is written: a kill before that resumes with every draw)
    _print_diagnostics(result.diagnostics)
    print(result.table.to_string(index=False, float_format=lambda x: f"{x:.4g}") if result.petab
          else fit.top_shifts(result.table))
    print(f"wrote {', '.join(str(f) for f in written)}")
    return 0


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return n


def _print_diagnostics(diag: dict) -> None:
    print(f"diagnostics: max R-hat {diag['max_rhat']}, min bulk ESS {diag['min_ess_bulk']:.0f}, "
          f"min tail ESS {diag['min_ess_tail']:.0f}, {diag['divergences']} divergences, "
          f"{diag['solver_failures']} solver failures while sampling, {diag['wall_s']:.0f} s")


def _predict(args) -> int:
    from pipeline import api
    from pipeline.decide import predict
    from pipeline.outputs.files import write_all

    pred, table = api.predict(args.config, args.data, args.posterior, log=_log)
    write_all({args.out: pred, args.reversal: table})
    if pred.attrs["solver_failures"]:
        print(f"warning: {pred.attrs['solver_failures']} of {pred['ok'].size} simulations failed; their draws are left "
              "out of reversal.csv's rows", file=sys.stderr)
    print("\n".join(predict.summary(table)) or "no resistant line named in predict.resists: no reversal rows")
    print(f"simulated {pred.sizes['draw']} draws x {pred.sizes['cell_line']} lines x {pred.sizes['treatment']} "
          f"treatments in {pred.attrs['wall_s']:.0f} s\nwrote {args.out} and {args.reversal}")
    return 0


def _design(args) -> int:
    from pipeline import api
    from pipeline.outputs.files import write_all

    table = api.design(args.config, args.data, args.posterior, log=_log)
    write_all({args.out: table})
    for line, rows in table.groupby("cell_line", sort=True):
        r = rows.iloc[0]
        print(f"{line}: first {r['treatment']}, {r['target']} at {r['times_min']} min: {r['expected_info_bits']:.2f} "
              f"bits about the mechanism ({r['tells_apart']})")
    print(f"wrote {args.out}")
    return 0


def _summarise(args) -> int:
    from pipeline import api, fit
    from pipeline.outputs.files import write_all

    cfg = api.load_config(args.config)
    if "petab" in cfg:
        raise InputError([Problem(args.config, "is a PEtab analysis: its fit writes parameters.csv itself",
                                  key="petab", fix="summarise the fit of a blot dataset")])
    table = api.summarise(args.posterior, cfg["summary"]["threshold_log2"])
    write_all({args.out: table})
    print(fit.top_shifts(table))
    print(f"wrote {args.out}")
    return 0


def _named_paths(items: list[str], form: str, example: str) -> dict[str, str]:
    """Command-line arguments NAME=PATH as {name: path}; every one not of that form is reported at once."""
    pairs = [a.split("=", 1) for a in items]
    bad = [a for a, p in zip(items, pairs) if len(p) != 2 or not p[0]]
    if bad:
        raise InputError([Problem("command line", f"'{a}' is not {form}", fix=f"write e.g. {example}") for a in bad])
    return dict(pairs)


def _summarise_analyses(args) -> int:
    import pandas as pd

    from pipeline.outputs import analyses
    from pipeline.outputs.files import write_all

    tables = _named_paths(args.tables, "ANALYSIS=SHIFTS", "example=results/example/shifts.csv")
    table = analyses.top_mechanisms({name: pd.read_csv(path) for name, path in tables.items()}, args.top)
    write_all({args.out: table})
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"wrote {args.out}")
    return 0


def _shifts(args) -> int:
    import pandas as pd

    from pipeline import fit

    path = Path(args.shifts)
    if not path.is_file():
        raise InputError([Problem(str(path), "does not exist", fix="run the fit first (make demo, or snakemake)")])
    print(f"Most probably shifted mechanism parameters per resistant line ({path}):")
    print(fit.top_shifts(pd.read_csv(path), args.top))
    return 0


def _petab_llh(args) -> int:
    import jax

    from pipeline.petab import problem as petabproblem

    problem = petabproblem.load(args.problem)
    settings = dataclasses.replace(petabproblem.REFERENCE, **{k: getattr(args, k) for k in ("rtol", "atol", "max_steps")
                                                               if getattr(args, k, None) is not None})
    ll, ok = jax.jit(lambda x: petabproblem.log_likelihood(problem, x, settings))(problem.x_nominal)
    print(f"{problem.name}: {len(problem.y)} measurements, {len(problem.simulations)} simulations, "
          f"{len(problem.x_ids)} estimated parameters at their nominal values")
    if not bool(ok):
        print("petab-llh: a solve failed at the nominal parameters; try --max-steps 100000 or looser --rtol/--atol",
              file=sys.stderr)
        return 1
    print(f"llh={float(ll):.10g}")
    return 0


def _export_petab(args) -> int:
    import json

    import numpy as np

    from pipeline import config, fit
    from pipeline.blots import dataset, ingest
    from pipeline.petab import export as petabexport
    from pipeline.outputs.files import atomic_dir

    cfg = config.load(args.config)
    if "petab" in cfg:
        raise InputError([Problem(args.config, "is already a PEtab problem", key="petab",
                                  fix="export a config with a `dataset:`")])
    if cfg["model"]["noise"] != "lognormal":  # PEtab v1 noise: normal or Laplace (on the observable's scale)
        raise InputError([Problem(args.config, "has no PEtab v1 form: PEtab v1 noise is normal or Laplace",
                                  key="model.noise", value=cfg["model"]["noise"],
                                  fix="export with `model: {noise: lognormal}` (the exported noise is normal on log y)")])
    if cfg["prior"]["integrate_sigma"]:  # PEtab v1 noise parameters are estimated, not integrated out
        raise InputError([Problem(args.config, "integrates sigma out, which PEtab v1 cannot state",
                                  key="prior.integrate_sigma", value=True,
                                  fix="export with `prior: {integrate_sigma: false}` (sigma__<target> parameters)")])
    ds = ingest.to_xarray(dataset.load(cfg["dataset"]))
    m = fit.model(cfg, ds)
    u = petabexport.nominal_point(m)
    if args.map:
        result = json.loads(Path(args.map).read_text(encoding="utf-8"))
        if result.get("coords") != list(m.coords) or not result.get("fits"):
            raise InputError([Problem(args.map, "was not fitted with this config's model, or has no fit",
                                      fix="run fit-map with the same config first")])
        u = np.array(result["fits"][0]["u"], dtype=float)
    with atomic_dir(args.out) as tmp:
        petabexport.write(m, ds, u, tmp)
    ll, _, ok = petabexport.conditional_log_likelihood(m, u)
    print(f"wrote the PEtab problem {Path(args.out) / 'problem.yaml'}; its log-likelihood at the exported values: "
          f"{float(ll):.10g}{'' if bool(ok) else ' (a solve failed)'}")
    return 0


def _report_command(args) -> int:
    from pipeline import api
    from pipeline.outputs import report

    path = Path(args.config or next((p for p in (f"config/{args.analysis}.yaml", "config/config.yaml")
                                     if Path(p).is_file()), f"config/{args.analysis}.yaml"))
    if not path.is_file():
        raise InputError([Problem(str(path), "does not exist", fix="give the analysis's config with --config")])
    cfg = api.load_config(path)
    if cfg["analysis"] != args.analysis:
        raise InputError([Problem(str(path), f"is the config of analysis '{cfg['analysis']}', not '{args.analysis}'",
                                  fix="give the config whose `analysis` is the one to report")])
    written = api.report(cfg, args.results or f"results/{args.analysis}")
    print(f"wrote {written} and its figures in {written.parent / report.FIGURES}")
    return 0


def _compare(args) -> int:
    from pipeline import api
    from pipeline.outputs.files import write_all

    table = api.compare(_named_paths(args.posteriors, "VARIANT=POSTERIOR", "full=results/example/posterior.nc"))
    write_all({args.out: table})
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"wrote {args.out}")
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _config(args) -> int:
    from pipeline import config

    print(yaml.safe_dump(config.load(args.config), sort_keys=False), end="")
    return 0


def _summary(data) -> str:
    from pipeline import vocabulary as v

    m, c = data.measurements, data.conditions
    lines = ", ".join(sorted(c[v.CELL_LINE].unique()))
    return (f"{data.folder}: valid. {len(c)} conditions of {c[v.CELL_LINE].nunique()} cell lines ({lines}; "
            f"reference {data.meta['reference_line']}), drugs: {', '.join(data.drugs) or 'none'}; "
            f"{len(m)} bands of {m[v.TARGET].nunique()} targets on {m[v.BLOT_ID].nunique()} blots.")


def _report(problems: list[Problem], closing: str = "") -> None:
    for p in problems:
        print(p, file=sys.stderr)
    counts = Counter(p.severity for p in problems)
    if counts[ERROR]:
        tally = ", ".join(f"{n} {sev}{'s' if n > 1 else ''}" for sev, n in sorted(counts.items()))
        print(f"{tally}; {closing}" if closing else tally, file=sys.stderr)
