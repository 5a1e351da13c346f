"""Command line: `python -m pipeline <command> ...`, one command per pipeline step.

Only this module reads arguments and prints. Bad input is reported as one line per
problem on stderr (file, row, column, value, fix) with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections import Counter
from pathlib import Path

import yaml

from pipeline.problems import ERROR, InputError, Problem, one_of

EXIT_BAD_INPUT = 2

# XLA's C++ log prints harmless "algebraic simplifier is likely stuck" lines at ERROR level while
# compiling the stiff solver; real failures still surface as Python errors. Set it to 0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# JAX's persistent compilation cache: every command (and every Snakemake job) compiles the same solver code;
# the second one loads it. Set JAX_COMPILATION_CACHE_DIR to move it, or to "" to switch it off.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "pipeline" / "jax"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
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
    p.add_argument("config", help="configs/<analysis>.yaml")
    p.add_argument("--out", required=True, help="NetCDF of trajectories, e.g. results/example/simulation.nc")
    p.add_argument("--plot", required=True, help="figure, e.g. results/example/simulation.png")
    p.add_argument("--data", help="the ingested dataset (NetCDF from `ingest`); default: read the config's dataset")
    p.set_defaults(run=_simulate)

    p = sub.add_parser("simulate-dataset", help="simulate a blot dataset (format v1) from a spec, with its truth")
    p.add_argument("spec", help="spec YAML (see data/specs/ and pipeline/schemas/simulation.schema.yaml)")
    p.add_argument("--out", required=True, help="dataset folder to write (replaced atomically if it exists)")
    p.set_defaults(run=_simulate_dataset)

    p = sub.add_parser("fit-map", help="multi-start MAP fits of the config's model to the dataset (map.json)")
    p.add_argument("config", help="configs/<analysis>.yaml")
    p.add_argument("--data", help="the ingested dataset, e.g. results/example/data.nc (not for a `petab:` config)")
    p.add_argument("--variant", default="base", help="fit this model variant of the config's `variants` "
                   "(default: base, the config's own model)")
    p.add_argument("--out", required=True, help="JSON to write, e.g. results/example/map.json")
    p.set_defaults(run=_fit_map)

    p = sub.add_parser("fit", aliases=["fit-nuts"],
                       help="the posterior from the best MAP fits (the config's `sampler:`): mechanism shifts, "
                            "diagnostics (`fit-nuts`: its deprecated name)")
    p.add_argument("config", help="configs/<analysis>.yaml")
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
    p.set_defaults(run=_fit)

    p = sub.add_parser("predict", help="posterior predictions of candidate treatments per cell line, and which "
                       "reverse resistance (predictions.nc, reversal.csv)")
    p.add_argument("config", help="configs/<analysis>.yaml (its `predict:` section)")
    p.add_argument("--data", required=True, help="the ingested dataset, e.g. results/example/data.nc")
    p.add_argument("--posterior", required=True, help="the fit's posterior, e.g. results/example/posterior.nc")
    p.add_argument("--out", required=True, help="NetCDF to write, e.g. results/example/predictions.nc")
    p.add_argument("--reversal", required=True, help="CSV to write, e.g. results/example/reversal.csv")
    p.set_defaults(run=_predict)

    p = sub.add_parser("design", help="rank candidate next blots by what they would tell about the mechanism "
                       "(design.csv)")
    p.add_argument("config", help="configs/<analysis>.yaml (its `design:` and `predict:` sections)")
    p.add_argument("--data", required=True, help="the ingested dataset, e.g. results/example/data.nc")
    p.add_argument("--posterior", required=True, help="the fit's posterior, e.g. results/example/posterior.nc")
    p.add_argument("--out", required=True, help="CSV to write, e.g. results/example/design.csv")
    p.set_defaults(run=_design)

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
    p.add_argument("config", help="configs/<analysis>.yaml (with a `dataset:`)")
    p.add_argument("--out", required=True, help="folder to write (replaced atomically), e.g. results/example/petab")
    p.add_argument("--map", help="map.json of the same config: export the best MAP fit's values (default: the "
                   "prior medians, no shifts)")
    p.set_defaults(run=_export_petab)

    p = sub.add_parser("report", help="write results/<analysis>/report.html and its figures from the fit's outputs")
    p.add_argument("analysis", help="the analysis name (the config's `analysis`)")
    p.add_argument("--config", help="its config (default configs/<analysis>.yaml)")
    p.add_argument("--results", help="the folder of its fit outputs (default results/<analysis>)")
    p.set_defaults(run=_report_command)

    p = sub.add_parser("compare", help="rank model variants by PSIS-LOO (compare.csv) from their posterior.nc")
    p.add_argument("posteriors", nargs="+", metavar="VARIANT=POSTERIOR",
                   help="a name and its posterior.nc, e.g. full=results/example/posterior.nc")
    p.add_argument("--out", required=True, help="CSV to write, e.g. results/example/compare.csv")
    p.set_defaults(run=_compare)

    p = sub.add_parser("config", help="check an analysis config and print it with its defaults filled")
    p.add_argument("config", help="configs/<analysis>.yaml")
    p.set_defaults(run=_config)
    return parser


def _validate(args) -> int:
    from pipeline.blots import dataset

    data = dataset.load(args.dataset)
    _report(list(data.warnings))
    print(_summary(data))
    return 0


def _ingest(args) -> int:
    from pipeline.blots import dataset, ingest

    if Path(args.out).is_dir():
        raise InputError([Problem(args.out, "is a folder", fix="give a file path for --out, e.g. results/example/data.nc")])
    data = dataset.load(args.dataset)
    _report(list(data.warnings))
    ingest.write(ingest.to_xarray(data), args.out)
    print(f"{_summary(data)}\nwrote {args.out}")
    return 0


def _simulate(args) -> int:
    from pipeline import config
    from pipeline.blots import dataset, ingest
    from pipeline.model import trajectories
    from pipeline.outputs.files import atomic_path

    cfg = config.load(args.config)
    data = ingest.read(args.data) if args.data else ingest.to_xarray(dataset.load(cfg["dataset"]))
    traj = trajectories.run(cfg, data)
    failed = [str(c) for c, ok in zip(traj.condition.values, traj.ok.values) if not ok]
    if failed:
        print(f"warning: the solver failed for {len(failed)} condition(s): {', '.join(failed)}", file=sys.stderr)
    with atomic_path(args.out) as tmp:
        traj.to_netcdf(tmp, engine=ingest.NETCDF_ENGINE)
    fig = trajectories.plot(traj, data)
    with atomic_path(args.plot) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(args.plot).suffix.lstrip(".") or "png")
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
    from pipeline import config, fit
    from pipeline.outputs.files import write_json

    cfg = config.variant(config.load(args.config), args.variant)
    if "petab" in cfg:
        from pipeline.petab import fit as petabfit

        result = petabfit.run_map(cfg, log=_log)
    else:
        result = fit.run_map(cfg, _dataset(args), log=_log)
    if not result["fits"]:
        print(f"fit-map: every one of {cfg['map']['starts']} starts failed; nothing written. Check the solver "
              "settings and the priors of the estimated parameters.", file=sys.stderr)
        return 1
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0


def _dataset(args):
    from pipeline.blots import ingest

    if not args.data:
        raise InputError([Problem(args.config, "names a dataset", fix=f"give the ingested dataset: {args.command} "
                                  f"{args.config} --data results/<analysis>/data.nc ...")])
    return ingest.read(args.data)


def _fit(args) -> int:
    import json

    from pipeline import config, fit
    from pipeline.blots import ingest
    from pipeline.outputs.files import atomic_path

    if args.command == "fit-nuts":
        print("fit-nuts is deprecated: the command is now `fit` (same arguments)", file=sys.stderr)
    cfg = config.variant(config.load(args.config), args.variant)
    map_result = json.loads(Path(args.map).read_text(encoding="utf-8"))
    if "petab" in cfg:
        return _fit_petab(args, cfg, map_result)
    if not args.shifts:
        raise InputError([Problem(args.config, "names a dataset", fix="give --shifts results/<analysis>/shifts.csv")])
    idata, table, diag = fit.run_posterior(cfg, _dataset(args), map_result, log=_log)
    with atomic_path(args.posterior) as p, atomic_path(args.shifts) as s, atomic_path(args.diagnostics) as d:
        idata.to_netcdf(str(p), engine=ingest.NETCDF_ENGINE)
        table.to_csv(s, index=False, float_format="%.6g")
        Path(d).write_text(json.dumps(diag, indent=1) + "\n", encoding="utf-8")
    _print_diagnostics(diag)
    print(fit.top_shifts(table))
    print(f"wrote {args.posterior}, {args.shifts} and {args.diagnostics}")
    return 0


def _fit_petab(args, cfg: dict, map_result: dict) -> int:
    import json

    from pipeline.blots import ingest
    from pipeline.petab import fit as petabfit
    from pipeline.outputs.files import atomic_path

    idata, diag = petabfit.run_posterior(cfg, map_result, log=_log)
    table = petabfit.summary_table(idata)
    written = [args.posterior, args.diagnostics] + [f for f in (args.shifts, args.plot) if f]
    fig = petabfit.plot_predictive(idata) if args.plot else None
    with atomic_path(args.posterior) as p, atomic_path(args.diagnostics) as d:
        idata.to_netcdf(str(p), engine=ingest.NETCDF_ENGINE)
        Path(d).write_text(json.dumps(diag, indent=1) + "\n", encoding="utf-8")
        if args.shifts:
            with atomic_path(args.shifts) as s:
                table.to_csv(s, index=False, float_format="%.6g")
        if fig is not None:
            with atomic_path(args.plot) as f:
                fig.savefig(f, dpi=110, format=Path(args.plot).suffix.lstrip(".") or "png")
    _print_diagnostics(diag)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"wrote {', '.join(written)}")
    return 0


def _print_diagnostics(diag: dict) -> None:
    print(f"diagnostics: max R-hat {diag['max_rhat']}, min bulk ESS {diag['min_ess_bulk']:.0f}, "
          f"min tail ESS {diag['min_ess_tail']:.0f}, {diag['divergences']} divergences, "
          f"{diag['solver_failures']} solver failures while sampling, {diag['wall_s']:.0f} s")


def _decide_inputs(args):
    """(config, dataset, posterior group) of `predict` and `design`, the config's lines checked against the data."""
    import arviz as az

    from pipeline import config, vocabulary
    from pipeline.blots import ingest

    cfg = config.load(args.config)
    if "petab" in cfg:
        raise InputError([Problem(args.config, "is a PEtab problem; predict and design need a blot dataset",
                                  key="petab", fix="run them on a config with a `dataset:`")])
    for path in (args.data, args.posterior):
        if not Path(path).is_file():
            raise InputError([Problem(path, "does not exist", fix="run the fit first (snakemake, or make demo)")])
    ds = ingest.read(args.data)
    lines = sorted(set(str(x) for x in ds[vocabulary.CELL_LINE].values) - {ds.attrs["reference_line"]})
    bad = [Problem(args.config, "is not a resistant (non-reference) line of the dataset", key=f"predict.resists.{line}",
                   value=line, fix=one_of(lines, line)) for line in cfg["predict"]["resists"] if line not in lines]
    if bad:
        raise InputError(bad)
    return cfg, ds, az.from_netcdf(args.posterior).posterior


def _predict(args) -> int:
    from pipeline.blots import ingest
    from pipeline.decide import predict
    from pipeline.outputs.files import atomic_path

    cfg, ds, posterior = _decide_inputs(args)
    pred, table = predict.run(cfg, ds, posterior, log=_log)
    with atomic_path(args.out) as p, atomic_path(args.reversal) as r:
        pred.to_netcdf(p, engine=ingest.NETCDF_ENGINE)
        table.to_csv(r, index=False, float_format="%.6g")
    if pred.attrs["solver_failures"]:
        print(f"warning: {pred.attrs['solver_failures']} of {pred['ok'].size} simulations failed; their draws are left "
              "out of reversal.csv's rows", file=sys.stderr)
    print("\n".join(predict.summary(table)) or "no resistant line named in predict.resists: no reversal rows")
    print(f"simulated {pred.sizes['draw']} draws x {pred.sizes['cell_line']} lines x {pred.sizes['treatment']} "
          f"treatments in {pred.attrs['wall_s']:.0f} s\nwrote {args.out} and {args.reversal}")
    return 0


def _design(args) -> int:
    from pipeline.decide import design
    from pipeline.outputs.files import atomic_path

    cfg, ds, posterior = _decide_inputs(args)
    table = design.run(cfg, ds, posterior, log=_log)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    for line, rows in table.groupby("cell_line", sort=True):
        r = rows.iloc[0]
        print(f"{line}: first {r['treatment']}, {r['target']} at {r['times_min']} min: {r['expected_info_bits']:.2f} "
              f"bits about the mechanism ({r['tells_apart']})")
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
    from pipeline import config
    from pipeline.outputs import report

    path = Path(args.config or f"configs/{args.analysis}.yaml")
    if not path.is_file():
        raise InputError([Problem(str(path), "does not exist", fix="give the analysis's config with --config")])
    cfg = config.load(path)
    if cfg["analysis"] != args.analysis:
        raise InputError([Problem(str(path), f"is the config of analysis '{cfg['analysis']}', not '{args.analysis}'",
                                  fix="give the config whose `analysis` is the one to report")])
    written = report.write(cfg, args.results or f"results/{args.analysis}")
    print(f"wrote {written} and its figures in {written.parent / report.FIGURES}")
    return 0


def _compare(args) -> int:
    from pipeline.outputs import compare
    from pipeline.outputs.files import atomic_path

    pairs = [a.split("=", 1) for a in args.posteriors]
    bad = [a for a, p in zip(args.posteriors, pairs) if len(p) != 2 or not p[0]]
    if bad:
        raise InputError([Problem("command line", f"'{a}' is not VARIANT=POSTERIOR", fix="write e.g. "
                                  "full=results/example/posterior.nc") for a in bad])
    table = compare.compare({name: path for name, path in pairs})
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
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
