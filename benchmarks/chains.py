"""Which coordinates of a posterior have not mixed, and does a combination of them mix? (a diagnostic of
`sbc.py --keep` or `fit`'s posterior.nc)

    python benchmarks/chains.py results/sbc_keep/replicate0.nc --top 5
    python benchmarks/chains.py results/sbc_keep/replicate0.nc --log k_T0 b_M1 \\
        --expr "basal=log(b_M1 + k_T0 / k_Td)"

Prints the `--top` coordinates by R-hat with each chain's mean and 5-95 % interval; for each `--log` name the
same on the log scale; for each `--expr NAME=EXPRESSION` (numpy's functions, the posterior's variables, and
the parameter table's nominal values of parameters the posterior lacks) its R-hat, sd and per-chain interval.
A ridge the data inform only as a combination shows as components with large R-hat and sd and a combination
with R-hat near 1 and a small sd. Last, the report's check for chains in separate modes
(`pipeline.outputs.diagnose.modes`).
"""

from __future__ import annotations

import argparse
import sys

import arviz as az
import numpy as np

from pipeline.model import parameters
from pipeline.outputs import diagnose


def describe(label: str, x: np.ndarray) -> str:
    """x [chain, draw]: R-hat, sd and each chain's 5/50/95 % quantiles."""
    q = "; ".join(" ".join(f"{v:.3g}" for v in np.quantile(c, [0.05, 0.5, 0.95])) for c in x)
    return f"{label:40s} R-hat {float(az.rhat(x)):.3f}  sd {x.std():.3g}  per chain 5/50/95 %: {q}"


def worst_rhat(rhat, top: int = 5) -> list[tuple[str, float]]:
    """The `top` largest R-hats of an az.rhat Dataset with their labels, NaN first, e.g.
    ("shift[resistant,k_T0]", 1.31): which coordinates have not mixed."""
    out = [(label, float(rhat[name].values[idx])) for label, name, idx in diagnose.coordinates(rhat)]
    return sorted(out, key=lambda t: -np.nan_to_num(t[1], nan=np.inf))[:top]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("posterior", help="an InferenceData NetCDF file")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--log", nargs="*", default=[], metavar="NAME")
    ap.add_argument("--expr", nargs="*", default=[], metavar="NAME=EXPRESSION")
    args = ap.parse_args(argv)
    idata = az.from_netcdf(args.posterior)
    post = idata.posterior
    where = {label: (name, idx) for label, name, idx in diagnose.coordinates(post, skip=2)}
    for label, _ in worst_rhat(az.rhat(post), args.top):
        name, idx = where[label]
        print(describe(label, post[name].values[(slice(None), slice(None), *idx)]))
    for name in args.log:
        print(describe(f"log {name}", np.log(post[name].values)))
    scope = {**{k: getattr(np, k) for k in ("log", "log2", "exp", "sqrt", "abs")}, **parameters.nominal(),
             **{k: v.values for k, v in post.data_vars.items() if v.ndim == 2}}
    for item in args.expr:
        name, _, expression = item.partition("=")
        print(describe(name, np.asarray(eval(expression, {"__builtins__": {}}, scope), dtype=float)))
    check = diagnose.modes(idata, threshold_log2=1.0)
    print(f"modes: {check.status} ({check.value}): {check.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
