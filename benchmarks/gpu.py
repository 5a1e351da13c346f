"""Value + gradient of the log density for many parameter sets at once (vmap), on whatever device JAX finds.

    python benchmarks/gpu.py                         # 1, 8, 64, 256, 1024 sets; data/example, default model
    python benchmarks/gpu.py --sizes 1 8 64 --repeats 3

The objective is the default analysis's log density (`pipeline.model.posterior.Model` with the schema's defaults:
every mechanism shiftable, the table's estimated set) on the dataset, at parameter sets drawn around u = 0
(N(0, 0.3^2) in every coordinate, so that the solves differ). Many-chain samplers evaluate exactly this.
Printed per batch size: compile seconds, milliseconds per call (median of --repeats), milliseconds per
parameter set, and the batch efficiency: (time per set at batch 1) / (time per set at this batch), i.e.
how much of the batch's parallelism the device turned into speed (ideal: the batch size while the device
has idle units; on 2 CPU cores about 1-2). Also checks that nothing in the compiled function calls back to
the host (a host callback serialises a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pipeline import config
from pipeline.blots import dataset, design, ingest
from pipeline.model import posterior, solver

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "example"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    cfg, problems = config.validate({"analysis": "gpu", "dataset": args.data}, "config", "benchmark")
    assert not problems, problems
    d = design.from_dataset(ingest.to_xarray(dataset.load(args.data)))
    m = posterior.Model(cfg, d, solver.SolverSettings())

    def value(u):
        lp, ok = m.log_density(u)
        return jnp.where(ok, lp, -jnp.inf)

    batched = jax.jit(jax.vmap(jax.value_and_grad(value)))
    text = jax.jit(jax.value_and_grad(value)).lower(jnp.zeros(m.dim)).as_text()
    callbacks = sum(text.count(k) for k in ("host_callback", "xla_python_cpu_callback", "xla_ffi_python"))
    dev = jax.devices()[0]
    print(f"{args.data}: {m.dim} coordinates, {len(d.condition_ids)} conditions, {len(d.lines)} lines; "
          f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}); host callbacks in the compiled "
          f"log density: {callbacks}")
    print(f"{'sets':>6} {'compile_s':>9} {'ms/call':>10} {'ms/set':>9} {'efficiency':>10} {'finite':>7}")
    per_set_1 = None
    for n in args.sizes:
        u = 0.3 * jax.random.normal(jax.random.PRNGKey(n), (n, m.dim))
        t0 = time.perf_counter()
        v, g = jax.block_until_ready(batched(u))
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(batched(u))
            times.append(time.perf_counter() - t0)
        ms = 1e3 * statistics.median(times)
        per_set = ms / n
        per_set_1 = per_set if per_set_1 is None else per_set_1
        finite = float(np.mean(np.isfinite(np.asarray(v)) & np.all(np.isfinite(np.asarray(g)), axis=1)))
        print(f"{n:>6} {compile_s:>9.1f} {ms:>10.1f} {per_set:>9.2f} {per_set_1 / per_set:>10.2f} {finite:>7.2f}",
              flush=True)


if __name__ == "__main__":
    main()
