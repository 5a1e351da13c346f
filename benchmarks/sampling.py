"""Benchmark of the posterior sampler: several sampler settings side by side on one posterior.

    python benchmarks/sampling.py config/config.yaml
    python benchmarks/sampling.py CONFIG --compare "dense:" "diag:dense_mass=false" "identity:mass_init=identity"
    python benchmarks/sampling.py CONFIG --set seed=3 --set map.starts=4 --set sampler.warmup=100
    python benchmarks/sampling.py CONFIG --compare "sampled:" "integrated:prior.integrate_sigma=true"
    python benchmarks/sampling.py CONFIG --compare "nuts:method=nuts" "chees16:method=chees,chains=16,samples=50"

One MAP (the config's `map:` section) gives the starting points and the Hessian; then each setting (a name
and `sampler:` keys on top of the config's, `name:key=value,...`) draws with `pipeline.inference.engine.sample`,
the code path of the `fit` stage. A setting with dotted config keys (e.g. `prior.integrate_sigma=true`) changes
the model and gets its own MAP. Printed per setting: wall time (warmup, which includes compiling that setting's
kernel, and sampling), gradient
evaluations (leapfrog steps, warmup included), min bulk ESS per second of total wall time and per 1000
gradient evaluations, max R-hat, min bulk and tail ESS, divergences and solver failures. ESS and R-hat
are over the unconstrained coordinates of the model (`Model.coords`), the sampler's own space: those every
compared model has, when the settings change the model.
The last line is `<name> ess_per_s=<x> ess_per_kgrad=<y> max_rhat=<z>` of each setting.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import arviz as az
import numpy as np
import yaml

from pipeline import config as configuration
from pipeline import fit, yamlschema
from pipeline.blots import dataset, ingest
from pipeline.inference import engine

SAMPLER_KEYS = tuple(yamlschema.schema("config")["properties"]["sampler"]["properties"])  # the `sampler:` keys


def parse_spec(spec: str) -> tuple[str, dict]:
    """`name:key=value,...`: a key is a `sampler:` key, or a dotted config key (e.g. prior.integrate_sigma=true)
    for a setting that changes the model (it gets its own MAP)."""
    name, _, rest = spec.partition(":")
    out = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in SAMPLER_KEYS and "." not in key:
            raise SystemExit(f"--compare {spec!r}: {key!r} is not a sampler key (one of {', '.join(SAMPLER_KEYS)}) "
                             "nor a dotted config key")
        out[key] = yaml.safe_load(value)
    return name, out


def load_config(path: str, sets: list[str]) -> dict:
    raw = yaml.safe_load(Path(path).read_text())
    return _load(raw, path, sets)


def _load(raw: dict, path: str, sets: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for item in sets:
        key, _, value = item.partition("=")
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(path).name
        path.write_text(yaml.safe_dump(raw))
        return configuration.load(path)


def model_keys(over: dict) -> tuple:
    """The dotted config keys of a setting (those that change the model), as a hashable key of its MAP."""
    return tuple(sorted((k, str(x)) for k, x in over.items() if "." in k))


def summary(draws, keep: np.ndarray) -> dict:
    """The row of one setting; ESS and R-hat over the coordinates `keep` (those all settings share)."""
    post = az.convert_to_inference_data({"u": draws.u[..., keep]}).posterior
    chains = draws.u.shape[0]
    bulk = az.ess(post, method="bulk")["u"].values
    tail = az.ess(post, method="tail")["u"].values
    rhat = az.rhat(post)["u"].values if chains > 1 else np.array([np.nan])
    grads = int(draws.stats["num_steps"].sum() + draws.warmup_steps.sum())
    wall = draws.wall_warmup_s + draws.wall_sampling_s
    return {"wall_warmup_s": draws.wall_warmup_s, "wall_sampling_s": draws.wall_sampling_s, "wall_s": wall,
            "grads": grads, "min_bulk": float(np.min(bulk)), "min_tail": float(np.min(tail)),
            "max_rhat": float(np.max(rhat)), "ess_per_s": float(np.min(bulk)) / wall,
            "ess_per_kgrad": 1e3 * float(np.min(bulk)) / grads,
            "divergences": int(draws.stats["diverging"].sum()), "failures": int(draws.failures.sum()),
            "steps_per_iter": float(draws.stats["num_steps"].mean()),
            "slowest": [(int(i), float(bulk[i])) for i in np.argsort(bulk)[:SLOWEST]]}


SLOWEST = 5  # the coordinates of least bulk ESS, named under each setting's row


HEADER = (f"{'name':<12} {'warmup_s':>8} {'sample_s':>8} {'grads':>7} {'steps/it':>8} {'ESS/s':>7} "
          f"{'ESS/kgrad':>9} {'max_rhat':>8} {'bulk':>6} {'tail':>6} {'div':>4} {'fail':>4}")


def table_row(r: dict) -> str:
    return (f"{r['name']:<12} {r['wall_warmup_s']:>8.0f} {r['wall_sampling_s']:>8.0f} {r['grads']:>7d} "
            f"{r['steps_per_iter']:>8.1f} {r['ess_per_s']:>7.3f} {r['ess_per_kgrad']:>9.2f} {r['max_rhat']:>8.3f} "
            f"{r['min_bulk']:>6.0f} {r['min_tail']:>6.0f} {r['divergences']:>4d} {r['failures']:>4d}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (dotted, e.g. sampler.warmup=100); repeatable")
    ap.add_argument("--save-draws", metavar="DIR", help="write each setting's draws of u (chains x draws x coords) "
                    "and their coordinate names to DIR/<name>.npz, for a look at the slow coordinates afterwards")
    ap.add_argument("--mass-from", metavar="NPZ", help="start every setting from the mass matrix of these saved "
                    "draws (--save-draws of an earlier run of the same model): their covariance, a pilot run's "
                    "estimate of the posterior's, instead of the MAP's Laplace approximation")
    ap.add_argument("--compare", nargs="+", default=["dense:", "diag:dense_mass=false"], metavar="NAME:KEY=VALUE,...")
    args = ap.parse_args(argv)
    raw = yaml.safe_load(Path(args.config).read_text())
    config = _load(raw, args.config, args.set)
    specs = [parse_spec(spec) for spec in args.compare]
    ds = ingest.to_xarray(dataset.load(config["dataset"]))
    models = {}  # per set of model keys: its model, config and MAP
    for _, over in specs:
        changed = model_keys(over)
        if changed not in models:
            cfg = _load(raw, args.config, args.set + [f"{k}={x}" for k, x in changed])
            m = fit.model(cfg, ds)
            print(f"{config['dataset']} {dict(changed) or ''}: {m.dim} coordinates ({len(m.estimated)} estimated "
                  f"per line, {len(m.shift_params)} shiftable); sampler {cfg['sampler']}", flush=True)
            t0 = time.perf_counter()
            map_result = engine.map_fits(m, cfg, lambda u: {}, log=lambda s: None)
            print(f"MAP: {time.perf_counter() - t0:.0f} s (compile included)", flush=True)
            models[changed] = (m, cfg, map_result)
    pilot = np.load(args.mass_from) if args.mass_from else None
    shared = set.intersection(*(set(m.coords) for m, _, _ in models.values()))
    rows = []
    for name, over in specs:
        m, cfg, map_result = models[model_keys(over)]
        cfg = copy.deepcopy(cfg)
        cfg["sampler"].update({k: x for k, x in over.items() if "." not in k})
        if pilot is not None:  # the sampler takes the inverse mass matrix as the inverse of this "Hessian"
            order = [list(pilot["coords"]).index(c) for c in m.coords]
            cov = np.cov(pilot["u"][..., order].reshape(-1, len(order)).T)
            map_result = {**map_result, "hessian_at_best": np.linalg.inv(cov).tolist()}
        t0 = time.perf_counter()
        draws = engine.sample(m, cfg, map_result, log=lambda s: None)
        keep = np.array([c in shared for c in m.coords])
        row = {"name": name, "setting": over, "process_s": time.perf_counter() - t0, **summary(draws, keep)}
        rows.append(row)
        print(f"[{name}] {over}: {row['process_s']:.0f} s", flush=True)
        names = [c for c in m.coords if c in shared]
        print(HEADER + "\n" + table_row(row), flush=True)  # each row as it comes: a killed run keeps the finished ones
        print("slowest (bulk ESS): " + ", ".join(f"{names[i]} {e:.0f}" for i, e in row["slowest"]), flush=True)
        if args.save_draws:
            Path(args.save_draws).mkdir(parents=True, exist_ok=True)
            np.savez(Path(args.save_draws) / f"{name}.npz", u=draws.u, coords=np.array(m.coords))
    if len(models) > 1:
        print(f"(ESS and R-hat over the {len(shared)} coordinates every setting's model has)")
    print()
    print(HEADER)
    for r in rows:
        print(table_row(r))
    print("(warmup_s includes compiling each setting's kernel; ESS/s over warmup + sampling)")
    for r in rows:
        print(f"{r['name']} ess_per_s={r['ess_per_s']:.4f} ess_per_kgrad={r['ess_per_kgrad']:.3f} "
              f"max_rhat={r['max_rhat']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
