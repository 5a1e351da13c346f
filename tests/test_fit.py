"""The fit on the real network: a small synthetic experiment with one planted shift (tests/data/one_shift,
made by `python -m pipeline simulate-dataset tests/data/specs/one_shift.yaml --out tests/data/one_shift`:
IC50_MK2206 x 30 in the resistant line, X unshifted), MAP then NUTS as the stages run them, sized for CI
(2 estimated parameters, 2 shiftable mechanisms, 2 chains). The long calibration over many datasets is
benchmarks/sbc.py."""

import json
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import xarray as xr
import yaml
from test_workflow import snakemake

from pipeline import cli, config, dataset, fit, ingest

ONE_SHIFT = Path(__file__).parent / "data" / "one_shift"
PLANTED_LOG2 = np.log2(30.0)

CONFIG = {
    "analysis": "one_shift",
    "dataset": str(ONE_SHIFT),
    "seed": 3,
    "model": {"estimate": ["kd_T", "IC50_MK2206"],
              "shift_mechanisms": ["akt_allosteric_binding", "pim_parallel_kinase"]},
    "solver": {"rtol": 1.0e-5},
    "map": {"starts": 4, "steps": 60},
    "nuts": {"chains": 2, "warmup": 100, "samples": 100},
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The whole workflow (ingest, simulate, fit_map, fit_nuts) through Snakemake, as a lab runs it."""
    out = tmp_path_factory.mktemp("fit")
    (out / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    run = snakemake("--directory", str(out), "--configfile", str(out / "cfg.yaml"), "--cores", "2", cwd=out)
    assert run.returncode == 0, run.stdout + run.stderr
    return out / "results" / "one_shift"


def test_workflow_writes_every_output(fitted):
    for name in ("data.nc", "simulation.nc", "simulation.png", "map.json", "posterior.nc", "shifts.csv",
                 "diagnostics.json"):
        assert (fitted / name).is_file(), name
    with xr.open_dataset(fitted / "data.nc", engine="h5netcdf") as got:
        want = ingest.to_xarray(dataset.load(ONE_SHIFT))
        np.testing.assert_array_equal(got["y"].values, want["y"].values)
    log = (fitted.parents[1] / "logs" / "one_shift" / "fit_map.log").read_text()
    assert "MAP iteration 1/" in log and "MAP done" in log  # progress is shown
    assert not list(fitted.glob(".*.part"))  # nothing half-written


def test_map_finds_the_planted_shift(fitted):
    result = json.loads((fitted / "map.json").read_text())
    stats = result["start_statistics"]
    assert stats["starts"] == 4 and stats["failed_start"] == 0
    best = result["fits"][0]
    assert best["rank"] == 1 and best["log_posterior"] == max(f["log_posterior"] for f in result["fits"])
    assert abs(best["log2_fc"]["resistant"]["IC50_MK2206"] - PLANTED_LOG2) < 0.5
    assert abs(best["log2_fc"]["resistant"]["X"]) < 0.5
    assert np.array(result["hessian_at_best"]).shape == (len(result["coords"]),) * 2


def test_planted_mechanism_is_attributed_and_the_unplanted_one_is_not(fitted):
    import pandas as pd

    table = pd.read_csv(fitted / "shifts.csv")
    assert list(table.columns) == fit.SHIFT_COLUMNS
    assert list(table["prob_shift"]) == sorted(table["prob_shift"], reverse=True)
    rows = table.set_index("parameter")
    assert rows.loc["IC50_MK2206", "mechanism"] == "akt_allosteric_binding"
    assert rows.loc["IC50_MK2206", "prob_shift"] > 0.9
    assert rows.loc["X", "prob_shift"] < 0.5
    assert rows.loc["IC50_MK2206", "ci90_low"] < PLANTED_LOG2 < rows.loc["IC50_MK2206", "ci90_high"]


def test_chains_converged(fitted):
    diag = json.loads((fitted / "diagnostics.json").read_text())
    assert diag["max_rhat"] < 1.05
    assert diag["min_ess_bulk"] > 50 and diag["min_ess_tail"] > 30
    for key in ("divergences", "solver_failures", "gradient_evaluations", "wall_s", "ess_bulk_per_s"):
        assert key in diag
    assert diag["gradient_evaluations"] > 2 * 200


def test_posterior_file_has_every_group_labelled(fitted):
    idata = az.from_netcdf(fitted / "posterior.nc")
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data",
                  "constant_data"):
        assert group in idata.groups(), group
    ds = ingest.to_xarray(dataset.load(ONE_SHIFT))
    n = ds.sizes["measurement"]
    assert idata.log_likelihood["y"].shape == (2, 100, n)
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "measurement")
    assert list(idata.observed_data["target"].values) == list(ds["target"].values)
    np.testing.assert_array_equal(idata.observed_data["y"].values, ds["y"].values)
    assert set(idata.posterior["log2_fc"]["shift_parameter"].values) == {"IC50_MK2206", "X"}
    assert list(idata.posterior["cell_line"].values) == ["resistant"]
    assert idata.sample_stats["solver_failures"].dims == ("chain",)
    assert bool(idata.sample_stats["solver_ok"].all())
    # the per-band log-likelihood is a real density: it sums to the joint one with the drawn scales and
    # PSIS-LOO runs on it
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    # the posterior-predictive median sits near the data on the log scale (noise sigma = 0.1)
    pred = np.log(idata.posterior_predictive["y"]).median(("chain", "draw")).values
    assert np.median(np.abs(pred - np.log(ds["y"].values))) < 0.15


def test_shifts_command_prints_the_top_mechanism(fitted, capsys):
    assert cli.main(["shifts", str(fitted / "shifts.csv"), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "resistant:" in out and "akt_allosteric_binding (IC50_MK2206)" in out


def test_config_defaults_for_the_fit(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"analysis": "x", "dataset": str(ONE_SHIFT)}))
    cfg = config.load(path)
    assert cfg["map"]["starts"] >= 16 and cfg["nuts"]["target_accept"] == 0.9
    assert cfg["prior"]["shift"] == "laplace" and len(cfg["model"]["shift_mechanisms"]) == 8
