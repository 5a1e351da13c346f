"""benchmarks/sbc.py's bookkeeping: which coordinate has not mixed, and a resumed run's settings (the
calibration itself is slow)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import sbc  # noqa: E402


def test_worst_rhat_names_variable_and_coordinate_largest_first_nan_on_top():
    rhat = xr.Dataset({"shift": (("cell_line", "parameter"), np.array([[1.01, 1.31, np.nan]])),
                       "sigma": ((), 1.12)},
                      coords={"cell_line": ["resistant"], "parameter": ["X", "k_T0", "g_F"]})
    assert sbc.worst_rhat(rhat, top=3) == [("shift[resistant,g_F]", pytest.approx(np.nan, nan_ok=True)),
                                           ("shift[resistant,k_T0]", 1.31), ("sigma", 1.12)]


def test_resume_refuses_a_file_written_with_other_settings(tmp_path, capsys):
    out = tmp_path / "sbc.json"
    settings = {"n": 20, "shard": "0/2", "warmup": 300, "samples": 100, "shiftable": "all", "mass_init": "pilot"}
    out.write_text(json.dumps({"settings": settings, "records": []}))
    with pytest.raises(SystemExit) as stop:
        sbc.main(["--n", "20", "--shard", "0/2", "--warmup", "100", "--shiftable", "all", "--mass-init", "pilot",
                  "--resume", "--out", str(out)])
    assert stop.value.code == 2
    assert "written with warmup=300" in capsys.readouterr().err
    assert json.loads(out.read_text())["settings"] == settings  # untouched


def test_write_json_leaves_no_partial_file(tmp_path):
    sbc.write_json(tmp_path / "a.json", {"records": [1]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"records": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_resume_refuses_a_file_sampled_in_other_coordinates(tmp_path, capsys):
    """The same settings but another geometry (the coordinates before b_M1 and k_T0 became sum and share)."""
    out = tmp_path / "sbc.json"
    settings = {"n": 1, "shard": "0/1", "warmup": 300, "samples": 100, "shiftable": "all", "mass_init": "pilot",
                "coords": ["kd_T", "IC50_MK2206", "X", "k_T0", "b_M1"]}
    out.write_text(json.dumps({"settings": settings, "records": []}))
    with pytest.raises(SystemExit) as stop:
        sbc.main(["--n", "1", "--warmup", "300", "--shiftable", "all", "--mass-init", "pilot", "--resume",
                  "--out", str(out)])
    assert stop.value.code == 2
    assert "sampled in other coordinates" in capsys.readouterr().err
    assert json.loads(out.read_text())["settings"] == settings
