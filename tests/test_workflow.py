"""The Snakefile: lint-clean, and runs end to end on the example into results/<analysis>/."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from pipeline import dataset, ingest

ROOT = Path(__file__).parents[1]
SNAKEMAKE = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or "snakemake"
ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def snakemake(*args, cwd):
    return subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True)


def test_snakemake_lint_passes():
    run = snakemake("--lint", cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_workflow_runs_end_to_end(tmp_path):
    (tmp_path / "cfg.yaml").write_text(f"analysis: e2e\ndataset: {ROOT / 'data' / 'example'}\n")
    run = snakemake("--directory", str(tmp_path), "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "1",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / "results" / "e2e" / "data.nc"
    log = (tmp_path / "logs" / "e2e" / "ingest.log").read_text()
    assert "valid" in log and "wrote" in log
    with xr.open_dataset(out, engine="h5netcdf") as got:
        want = ingest.to_xarray(dataset.load(ROOT / "data" / "example"))
        np.testing.assert_array_equal(got["y"].values, want["y"].values)
        assert list(got["target"].values) == list(want["target"].values)


def test_workflow_rejects_a_bad_config(tmp_path):
    (tmp_path / "cfg.yaml").write_text("analysis: 'not ok'\ndataset: data/example\n")
    run = snakemake("--directory", str(tmp_path), "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "1",
                    "--dry-run", cwd=tmp_path)
    assert run.returncode != 0
    assert "not ok" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()
