"""benchmarks/sampling.py's command line: settings specs and config overrides (the benchmark itself is slow)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import sampling as bench  # noqa: E402


def test_a_spec_is_a_name_and_sampler_keys_with_yaml_values():
    assert bench.parse_spec("diag:dense_mass=false,warmup=50") == ("diag", {"dense_mass": False, "warmup": 50})
    assert bench.parse_spec("default:") == ("default", {})
    assert bench.parse_spec("int:prior.integrate_sigma=true") == ("int", {"prior.integrate_sigma": True})
    with pytest.raises(SystemExit, match="'step' is not a sampler key"):
        bench.parse_spec("bad:step=3")


def test_set_overrides_dotted_keys_and_the_schema_fills_the_rest(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"analysis: a\ndataset: {ROOT / 'tests' / 'data' / 'one_shift'}\n")
    config = bench.load_config(str(cfg), ["sampler.warmup=7", "seed=11"])
    assert config["sampler"]["warmup"] == 7 and config["seed"] == 11
    assert config["sampler"]["samples"] == 500  # the schema's default
