"""The Python API (`pipeline.api`, re-exported by `pipeline`): what importing it changes, configs from dicts, the
objects it returns against the files the CLI writes, provenance in every output read back from the files, and the
diagnostics notebook on a PEtab fit (the blot fit's run is in tests/test_fit.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from test_petab import ESTIMATED, write_problem

import pipeline
from pipeline import api, cli
from pipeline.outputs import provenance
from pipeline.problems import InputError

ROOT = Path(__file__).parents[1]
ONE_SHIFT = ROOT / "tests" / "data" / "one_shift"
CLEAN_ENV = {k: x for k, x in os.environ.items() if k not in ("EQX_ON_ERROR", "JAX_ENABLE_X64")}


def _python(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=CLEAN_ENV, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


# ---- what importing changes ------------------------------------------------------------------------------
def test_import_pipeline_imports_no_jax_and_changes_no_setting():
    out = _python("import os, sys, pipeline\n"
                  "names = dir(pipeline)\n"
                  "print('jax' in sys.modules, 'EQX_ON_ERROR' in os.environ, sorted(set(pipeline.__all__) - set(names)))\n"
                  "import jax\n"
                  "print(jax.config.jax_enable_x64)")
    assert out.splitlines() == ["False False []", "False"]


def test_the_api_and_the_model_turn_on_float64_and_nan_errors_as_documented():
    """pipeline.runtime: float64 on; EQX_ON_ERROR defaults to nan, set before equinox reads it."""
    out = _python("import os, pipeline, jax\n"
                  "pipeline.load_config\n"
                  "print(jax.config.jax_enable_x64, os.environ['EQX_ON_ERROR'])")
    assert out == "True nan"
    out = _python("import pipeline.model.simulate, jax, equinox._config\n"
                  "print(jax.config.jax_enable_x64, equinox._config.EQX_ON_ERROR)")
    assert out == "True nan"
    out = _python("import os; os.environ['EQX_ON_ERROR'] = 'raise'\n"
                  "import pipeline.petab.problem, equinox._config\n"
                  "print(equinox._config.EQX_ON_ERROR)")
    assert out == "raise"  # the user's own setting wins


def test_pipeline_exports_exactly_the_api():
    public = {n for n, x in vars(api).items() if not n.startswith("_") and getattr(x, "__module__", "") == api.__name__}
    assert set(pipeline.__all__) == public | {"InputError"}
    assert pipeline.fit_posterior is api.fit_posterior and pipeline.InputError is InputError
    with pytest.raises(AttributeError):
        pipeline.no_such_function


# ---- configs and datasets ----------------------------------------------------------------------------
def test_a_config_dict_is_checked_and_filled_like_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    raw = {"analysis": "a", "dataset": "tests/data/one_shift", "sampler": {"chains": 3}}
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert pipeline.load_config(raw) == pipeline.load_config(path)
    assert raw == {"analysis": "a", "dataset": "tests/data/one_shift", "sampler": {"chains": 3}}  # left unchanged
    with pytest.raises(InputError) as e:
        pipeline.load_config({"analysis": "a", "dataset": "no/such/folder", "sampler": {"chains": 0}})
    assert [p.file for p in e.value.problems] == ["config"] and "sampler.chains" in str(e.value)
    with pytest.raises(InputError) as e:
        pipeline.load_config({"analysis": "a", "dataset": "no/such/folder"})
    assert "config, key 'dataset'" in str(e.value)  # relative to the directory we run from, as in a file
    variant = pipeline.load_config({**raw, "variants": [{"name": "v", "model": {"loops_off": ["grb10"]}}]}, "v")
    assert variant["model"]["loops_off"] == ["grb10"] and variant["variants"] == []


def test_load_dataset_is_what_ingest_writes_and_names_every_problem(tmp_path):
    ds = pipeline.load_dataset(ONE_SHIFT)
    assert cli.main(["ingest", str(ONE_SHIFT), "--out", str(tmp_path / "data.nc")]) == 0
    written = pipeline.read_dataset(tmp_path / "data.nc")
    xr.testing.assert_equal(ds, written)  # (attrs aside: the time and command differ)
    assert written.attrs["command"] == f"python -m pipeline ingest {ONE_SHIFT} --out {tmp_path / 'data.nc'}"
    assert ds.attrs["command"] == "pipeline.load_dataset"
    for attrs in (ds.attrs, written.attrs):
        assert attrs["pipeline_version"] == pipeline.__version__ and attrs["git_commit"] == provenance.git_commit()
        assert attrs["created_utc"].endswith("+00:00") and "config" not in attrs
    bad = tmp_path / "bad"
    shutil.copytree(ONE_SHIFT, bad)
    rows = (bad / "measurements.csv").read_text().splitlines()
    head = rows[0].split(",")
    first = rows[1].split(",")
    first[head.index("signal")], first[head.index("target")] = "lots", "pFOO"
    (bad / "measurements.csv").write_text("\n".join([rows[0], ",".join(first), *rows[2:]]) + "\n")
    with pytest.raises(InputError) as e:
        pipeline.load_dataset(bad)
    assert {p.column for p in e.value.problems} >= {"signal", "target"}
    with pytest.raises(InputError, match="does not exist"):
        pipeline.read_dataset(tmp_path / "none.nc")


def test_git_commit_is_the_checkouts_or_unknown(monkeypatch, tmp_path):
    run = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if run.returncode == 0:  # (a source checkout)
        assert provenance.git_commit().removesuffix("-dirty") == run.stdout.strip()
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path)  # not a git checkout
    provenance.git_commit.cache_clear()
    try:
        assert provenance.git_commit() == "unknown"
    finally:
        provenance.git_commit.cache_clear()


def test_simulation_nc_records_its_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(yaml.safe_dump({"analysis": "one_shift", "dataset": "tests/data/one_shift", "seed": 5,
                                   "simulate": {"n_times": 8}}))
    assert cli.main(["simulate", str(cfg), "--out", str(tmp_path / "s.nc"), "--plot", str(tmp_path / "s.png")]) == 0
    with xr.open_dataset(tmp_path / "s.nc", engine="h5netcdf") as sim:
        record = provenance.of(sim.attrs)
    assert record["command"].startswith("python -m pipeline simulate ") and int(record["seed"]) == 5
    assert yaml.safe_load(record["config"]) == pipeline.load_config(cfg)
    assert record["git_commit"] == provenance.git_commit() and record["pipeline_version"] == pipeline.__version__


# ---- a PEtab fit through the CLI and the API, read back from its files ---------------------------------------------
@pytest.fixture(scope="module")
def petab_fit(tmp_path_factory):
    """fit-map by the CLI, the posterior by the API (saved as the fit stage saves it), the report by the CLI; small."""
    out = tmp_path_factory.mktemp("api")
    problem = write_problem(out / "problem", planted=True)
    cfg = out / "toy.yaml"
    cfg.write_text(yaml.safe_dump({"analysis": "toy", "petab": str(problem), "seed": 2,
                                   "solver": {"rtol": 1e-8, "atol": 1e-10}, "map": {"starts": 4, "steps": 30},
                                   "sampler": {"chains": 2, "warmup": 60, "samples": 60, "max_tree_depth": 4,
                                               "chain_method": "sequential"}}))
    results = out / "results"
    assert cli.main(["fit-map", str(cfg), "--out", str(results / "map.json")]) == 0
    fit = pipeline.fit_posterior(cfg, map_result=results / "map.json")
    written = fit.save(results)
    assert cli.main(["report", "toy", "--config", str(cfg), "--results", str(results)]) == 0
    return cfg, results, fit, written


def test_a_fit_saved_is_the_fit_read_back(petab_fit):
    cfg, results, fit, written = petab_fit
    assert [p.name for p in written] == ["posterior.nc", "parameters.csv", "diagnostics.json", "predictive.png"]
    back = pipeline.read_fit(results)
    assert back.petab and set(back.posterior.groups()) == set(fit.posterior.groups())
    for name in ESTIMATED:
        np.testing.assert_array_equal(back.posterior.posterior[name].values, fit.posterior.posterior[name].values)
    pd.testing.assert_frame_equal(back.table, fit.table, rtol=1e-5)  # the CSV keeps 6 digits
    assert back.diagnostics == json.loads(json.dumps(fit.diagnostics))
    pd.testing.assert_frame_equal(pipeline.summarise(results / "posterior.nc"), fit.table)  # no refit


def test_every_output_of_the_fit_records_its_provenance(petab_fit):
    cfg, results, fit, _ = petab_fit
    want_config = pipeline.load_config(cfg)
    idata = az.from_netcdf(results / "posterior.nc")
    for group in idata.groups():  # every group of posterior.nc, read back from the file
        record = provenance.of(getattr(idata, group).attrs)
        assert record["command"] == "pipeline.fit_posterior", group
        assert int(record["seed"]) == 2 and yaml.safe_load(record["config"]) == want_config, group
        assert record["pipeline_version"] == pipeline.__version__ and record["git_commit"] == provenance.git_commit()
    diag = json.loads((results / "diagnostics.json").read_text())
    assert diag["provenance"] == provenance.of(idata.posterior.attrs) | {"seed": 2}
    map_record = json.loads((results / "map.json").read_text())["provenance"]
    assert map_record["command"] == f"python -m pipeline fit-map {cfg} --out {results / 'map.json'}"
    assert map_record["seed"] == 2 and yaml.safe_load(map_record["config"]) == want_config
    page = (results / "report.html").read_text()
    assert "<h2>Provenance</h2>" in page and provenance.git_commit() in page
    assert "pipeline.fit_posterior" in page and "python -m pipeline report toy" in page


def test_notebook_runs_on_a_petab_fit(petab_fit):
    import nbformat
    from nbclient import NotebookClient

    cfg, results, _, _ = petab_fit
    nb = nbformat.read(ROOT / "notebooks" / "diagnostics.ipynb", as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = f'ANALYSIS = "toy"\nRESULTS = "{results}"\nCONFIG = "{cfg}"'
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "toy: PEtab problem problem" in text and "pipeline.fit_posterior" in text
    assert "most correlated:" in text and "Computed from 120 posterior samples" in text
    assert "the predict stage runs on blot analyses only" in text
