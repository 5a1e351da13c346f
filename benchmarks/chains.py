"""Which coordinates of a posterior have not mixed, and does a combination of them mix? (a diagnostic of
`sbc.py --keep` or `fit`'s posterior.nc)

    python benchmarks/chains.py results/sbc_keep/replicate0.nc --top 5
    python benchmarks/chains.py results/sbc_keep/replicate0.nc --log k_T0 b_M1 \\
        --expr "basal=log(b_M1 + k_T0 / k_Td)"

Prints the `--top` coordinates by R-hat with each chain's mean and 5-95 % interval; for each `--log` name the
same on the log scale; for each `--expr NAME=EXPRESSION` (numpy's functions, the posterior's variables, and
the parameter table's nominal values of parameters the posterior lacks) its R-hat, sd and per-chain interval.
A ridge the data inform only as a combination shows as components with large R-hat and sd and a combination
with R-hat near 1 and a small sd.
"""

from __future__ import annotations

import argparse
import sys

import arviz as az
import numpy as np

from pipeline.model import parameters


def describe(label: str, x: np.ndarray) -> str:
    """x [chain, draw]: R-hat, sd and each chain's 5/50/95 % quantiles."""
    q = "; ".join(" ".join(f"{v:.3g}" for v in np.quantile(c, [0.05, 0.5, 0.95])) for c in x)
    return f"{label:40s} R-hat {float(az.rhat(x)):.3f}  sd {x.std():.3g}  per chain 5/50/95 %: {q}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("posterior", help="an InferenceData NetCDF file")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--log", nargs="*", default=[], metavar="NAME")
    ap.add_argument("--expr", nargs="*", default=[], metavar="NAME=EXPRESSION")
    args = ap.parse_args(argv)
    post = az.from_netcdf(args.posterior).posterior
    rows = []
    for name, var in post.data_vars.items():
        coords = [var[d].values for d in var.dims[2:]]
        for idx in np.ndindex(var.shape[2:]):
            x = var.values[(slice(None), slice(None), *idx)]
            label = ",".join(str(c[i]) for c, i in zip(coords, idx))
            rows.append((float(az.rhat(x)), f"{name}[{label}]" if label else name, x))
    rows.sort(key=lambda r: -np.nan_to_num(r[0], nan=np.inf))
    for _, label, x in rows[:args.top]:
        print(describe(label, x))
    for name in args.log:
        print(describe(f"log {name}", np.log(post[name].values)))
    scope = {**{k: getattr(np, k) for k in ("log", "log2", "exp", "sqrt", "abs")}, **parameters.nominal(),
             **{k: v.values for k, v in post.data_vars.items() if v.ndim == 2}}
    for item in args.expr:
        name, _, expression = item.partition("=")
        print(describe(name, np.asarray(eval(expression, {"__builtins__": {}}, scope), dtype=float)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
