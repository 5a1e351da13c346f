"""benchmarks/chains.py: a ridge whose components have not mixed but whose combination has."""

import sys
from pathlib import Path

import arviz as az
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import chains  # noqa: E402


def test_components_of_a_ridge_do_not_mix_their_sum_does(tmp_path, capsys):
    rng = np.random.default_rng(0)
    total = rng.normal(0.0, 0.1, (2, 400))  # the informed combination: the same in both chains
    split = np.stack([rng.normal(-1.0, 0.3, 400), rng.normal(1.0, 0.3, 400)])  # each chain in its own arm
    a, b = total + split, total - split
    path = tmp_path / "p.nc"
    az.from_dict(posterior={"a": a, "b": b, "c": rng.normal(size=(2, 400))}).to_netcdf(str(path))
    assert chains.main([str(path), "--top", "2", "--expr", "s=(a + b) / 2"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == {"a", "b", "s", "modes:"}  # the two worst first, c (mixed) not among them
    # each chain in its own arm: the 90 % intervals of a and b do not overlap, those of c and s do
    assert lines["modes:"].startswith("modes: bad (2 coordinates)") and "c (" not in lines["modes:"]
    rhat = {k: float(v.split("R-hat ")[1].split()[0]) for k, v in lines.items() if k != "modes:"}
    assert rhat["a"] > 1.5 and rhat["b"] > 1.5
    assert rhat["s"] < 1.02
    assert np.isclose(float(lines["s"].split("sd ")[1].split()[0]), total.std(), rtol=1e-2)
