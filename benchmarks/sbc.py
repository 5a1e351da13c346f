"""Simulation-based calibration of the whole fit (MAP + NUTS + shift summary); slow, outside CI.

    python benchmarks/sbc.py --n 20                       # 20 synthetic datasets, ~4-6 min each on 2 cores
    python benchmarks/sbc.py --n 20 --shard 0/2 --out sbc0.json &  python benchmarks/sbc.py --n 20 --shard 1/2 --out sbc1.json
    python benchmarks/sbc.py --merge sbc0.json sbc1.json                                    # the two shards' summary
    python benchmarks/sbc.py --n 20 --shiftable all --out sbc_all.json     # all 8 mechanisms may shift (issue 16)
    python benchmarks/sbc.py --n 20 --shiftable all --mass-init pilot --warmup 300 --out sbc_all.json  # as it needs
    python benchmarks/sbc.py ... --out sbc_all.json --resume   # a stopped run goes on (the same command + --resume)

Each replicate i simulates the design of tests/data/specs/one_shift.yaml (parental + resistant line,
IGF-1, MK-2206 0 and 3 uM, three targets, two replicates, sigma 0.1) with
- the estimated parameters of the fit config (tests/test_fit.py's: kd_T, IC50_MK2206, and X, which
  symmetric lines estimate because pim_parallel_kinase may shift it) drawn from their priors, the other
  parameters at the table's values (the spec's off-table values and its null line are replaced),
- one planted mechanism, drawn uniformly from the config's shift mechanisms (akt_allosteric_binding,
  pim_parallel_kinase), shifted up by a log2 fold change drawn from U(2, 5); the other one is unshifted,
  (`--shiftable all`: the fit lets all 8 mechanisms shift, and estimates in both lines every parameter they
  shift, drawn from its prior too, Beta for fractions; the planted one is still one of the two this design
  can see: MK-2206 is its only drug),
- a fresh seed for blot scales, loadings and noise,
and fits it with the same compiled MAP and NUTS (the data are an argument of the compiled functions).
Printed per replicate, and at the end (also as JSON with --out): the coverage of the 90% intervals of all
shifts (planted and zero ones; target 0.85-0.95), of the planted ones alone, how often the planted mechanism
ranks first by prob_shift, how often an unplanted mechanism reaches prob_shift > 0.9 (a false call; target
<= 5 %), max R-hat, and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_fit import CONFIG  # noqa: E402  (the CI fit's config: one source of truth for the design)

from pipeline import config as config_mod  # noqa: E402
from pipeline import fit  # noqa: E402
from pipeline.blots import dataset, design, ingest
from pipeline.model import parameters, synthetic, variant
from pipeline.inference import engine, mcmc, optimize  # noqa: E402
from chains import worst_rhat  # noqa: E402  (labelled by diagnose.coordinates, as the report labels them)

SPEC = ROOT / "tests" / "data" / "specs" / "one_shift.yaml"
PLANTED = tuple(CONFIG["model"]["shift_mechanisms"])  # the mechanisms this design shows (MK-2206 only)
FALSE_CALL = 0.9  # prob_shift above this for an unplanted mechanism: a confident false call


def replicate_spec(base: dict, i: int, rng: np.random.Generator, cfg: dict) -> tuple[dict, dict]:
    spec = json.loads(json.dumps(base))
    table = parameters.table()
    drawn = {}
    for name in variant.estimated(cfg):  # the design gives one dose per drug: no Hill slope is estimated
        row = table.loc[name]
        if row["prior"] == "beta":
            drawn[name] = float(rng.beta(row["beta_a"], row["beta_b"]))
        else:
            assert row["prior"] == "lognormal", name
            drawn[name] = float(row["value"] * 10 ** (row["sigma_log10"] * rng.normal()))
    mechanism = str(rng.choice(PLANTED))
    log2_fc = float(rng.uniform(2.0, 5.0))
    param = parameters.mechanism_parameters(mechanism)[0]
    spec["seed"] = 1000 + i
    spec["parameters"] = drawn
    spec["lines"] = {"parental": {}, "resistant": {"shifts": {mechanism: {param: 2.0 ** log2_fc}}}}
    return spec, {"mechanism": mechanism, "parameter": param, "log2_fc": log2_fc, "parameters": drawn}


def summarise(records: list[dict]) -> dict:
    """Coverage of the 90% intervals (all shifts, planted, unplanted), how often the planted mechanism ranks
    first, the worst R-hat; printed as one line."""
    shifts = [(r, c) for r in records for c in r["shifts"]]
    summary = {"replicates": len(records),
               "coverage_90": float(np.mean([c["covered"] for _, c in shifts])),
               "coverage_90_planted": float(np.mean([c["covered"] for r, c in shifts
                                                     if c["parameter"] == r["parameter"]])),
               "coverage_90_unplanted": float(np.mean([c["covered"] for r, c in shifts
                                                       if c["parameter"] != r["parameter"]])),
               "planted_ranked_first": float(np.mean([r["first"] for r in records])),
               "false_call_rate": float(np.mean([any(c["prob_shift"] > FALSE_CALL for c in r["shifts"]
                                                     if c.get("mechanism", "") != r["mechanism"]) for r in records])),
               "max_rhat": float(max(r["max_rhat"] for r in records)),
               "divergences": int(sum(r["divergences"] for r in records)),
               "steps_per_iteration": float(np.mean([r["steps_per_iteration"] for r in records]))}
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return summary


def write_json(path, obj) -> None:
    """Write obj as JSON to path atomically (a stopped run never leaves half a file for --resume)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--shard", default="0/1", help="k/m: run replicates i with i %% m == k")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--shiftable", choices=["config", "all"], default="config",
                    help="the mechanisms the fit lets shift: the CI config's two, or all 8 (the schema's default)")
    ap.add_argument("--mass-init", choices=["hessian", "pilot"], default="hessian",
                    help="sampler.mass_init: the MAP's Laplace metric kept, or a pilot covariance from warmup's draws "
                         "(benchmarks/README.md: what the full model needs)")
    ap.add_argument("--out", help="write the per-replicate records and the summary as JSON here")
    ap.add_argument("--keep", metavar="DIR", help="also write each replicate's InferenceData to DIR/replicate<i>.nc")
    ap.add_argument("--resume", action="store_true", help="keep the records already in --out and run only the "
                    "replicates it lacks (a run stopped part-way goes on; refused if --n, --shard or the settings differ "
                    "from those stored in the file)")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only summarise the records of these --out files "
                    "(the shards of one run)")
    args = ap.parse_args(argv)
    if args.merge:
        summary = summarise([r for f in args.merge for r in json.loads(Path(f).read_text())["records"]])
        if args.out:
            write_json(args.out, summary)
        return 0
    k, m = map(int, args.shard.split("/"))
    base = synthetic.load_spec(SPEC)
    raw = {**CONFIG, "sampler": {**CONFIG["sampler"], "warmup": args.warmup, "samples": args.samples,
                                 "mass_init": args.mass_init}}
    if args.shiftable == "all":
        raw["model"] = {k: x for k, x in CONFIG["model"].items() if k != "shift_mechanisms"}  # the default: all
    records, model, opt, sampler, before = [], None, None, None, None
    settings = {key: getattr(args, key) for key in ("n", "shard", "warmup", "samples", "shiftable", "mass_init")}
    if args.resume:
        if not (args.out and Path(args.out).is_file()):
            ap.error("--resume needs --out naming the file of the stopped run")
        stored = json.loads(Path(args.out).read_text())
        before = stored.get("settings")  # (files written before settings were stored: taken on trust)
        differ = [key for key in settings if before is not None and before.get(key) != settings[key]]
        if differ:
            found = ", ".join(f"{key}={before.get(key)!r}" for key in differ)
            ap.error(f"--resume: {args.out} was written with {found}; rerun with those settings or write a new --out")
        records = stored["records"]
    done = {r["replicate"] for r in records}
    rng = np.random.default_rng(2026)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "cfg.yaml"
        cfg_path.write_text(yaml.safe_dump(raw))
        cfg = config_mod.load(cfg_path)
        specs = [replicate_spec(base, i, rng, cfg) for i in range(args.n)]  # drawn for all, so shards agree
        for i in range(args.n):
            if i % m != k or i in done:
                continue
            t0 = time.perf_counter()
            spec, truth = specs[i]
            folder = Path(tmp) / f"rep{i}"
            folder.mkdir()
            synthetic.write(spec, folder)
            ds = ingest.to_xarray(dataset.load(folder))
            if model is None:
                model = fit.model(cfg, ds)
                # the sampler's coordinates (its geometry: e.g. the summed inputs' sum and share) are a setting too
                if args.resume and before is not None and before.get("coords", list(model.coords)) != list(model.coords):
                    ap.error(f"--resume: {args.out} was sampled in other coordinates (another version of "
                             "pipeline/model/posterior.py); write a new --out")
                settings["coords"] = list(model.coords)
                opt = optimize.Optimizer(model)
                sampler = mcmc.Sampler(model, cfg["sampler"])
            d = design.from_dataset(ds)
            assert d.groups == model.design.groups and np.array_equal(d.cond_index, model.design.cond_index)
            log_y = np.log(d.y)
            key = jax.random.PRNGKey(i)
            starts = optimize.run(model, jax.random.fold_in(key, 1), cfg["map"]["starts"], cfg["map"]["steps"],
                                cfg["map"]["gtol"], log=lambda s: None, log_y=log_y, optimizer=opt)
            inits = np.stack([starts.u[starts.order[c % 2]] for c in range(cfg["sampler"]["chains"])])
            # as `engine.sample` does (mass_init hessian, and pilot until its window's end): the starting mass
            # matrix from the Hessian at the best fit. numpyro builds each chain's initial state eagerly from the
            # kernel's matrix, so setting it here reaches the next run without recompiling (chain_method sequential)
            hess = optimize.hessian(opt, starts.u[starts.order[0]], cfg["map"]["starts"], log_y=log_y)
            sampler.mcmc.sampler._inverse_mass_matrix = {(mcmc.SITE,): jnp.asarray(optimize.inverse_mass(hess))}
            draws = sampler.run(jax.random.fold_in(key, 2), inits, log_y=log_y)
            idata = engine.inference_data(model, draws, jax.random.fold_in(key, 3))  # (the table needs log2_fc only)
            table = fit.shift_table(idata)
            rhats = az.rhat(idata.posterior[["shift", "sigma"] + list(model.estimated)])
            rhat = float(max(np.nanmax(x.values) for x in rhats.data_vars.values()))
            slowest = worst_rhat(rhats)
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                idata.to_netcdf(Path(args.keep) / f"replicate{i}.nc")
            covered = []
            for _, row in table.iterrows():
                true = truth["log2_fc"] if row["parameter"] == truth["parameter"] else 0.0
                covered.append({"parameter": row["parameter"], "mechanism": row["mechanism"], "true": true,
                                "covered": bool(row["ci90_low"] <= true <= row["ci90_high"]),
                                "prob_shift": float(row["prob_shift"])})
            rec = {"replicate": i, **truth, "first": str(table.iloc[0]["parameter"]) == truth["parameter"],
                   "shifts": covered, "max_rhat": rhat, "divergences": int(draws.stats["diverging"].sum()),
                   "solver_failures": int(draws.failures.sum()),
                   "slowest": slowest, "steps_per_iteration": float(draws.stats["num_steps"].mean()),
                   "wall_s": round(time.perf_counter() - t0, 1)}
            records.append(rec)
            print(json.dumps({k2: rec[k2] for k2 in ("replicate", "mechanism", "log2_fc", "first", "max_rhat",
                                                      "slowest", "steps_per_iteration", "wall_s")}) + " " +
                  " ".join(f"{c['parameter']}:{'in' if c['covered'] else 'OUT'}(p={c['prob_shift']:.2f})"
                           for c in covered), flush=True)
            if args.out:
                write_json(args.out, {"settings": settings, "records": records})
    summary = summarise(records)
    if args.out:
        write_json(args.out, {"settings": settings, "records": records, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
