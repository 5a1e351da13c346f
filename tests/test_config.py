"""Configs: one schema for the CLI and Snakemake, defaults filled from it, bad values named clearly."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import validate as snakemake_validate

from pipeline import config
from pipeline.model import parameters
from pipeline.problems import InputError

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_is_valid(path):
    cfg = config.load(path)
    assert cfg["analysis"] == path.stem


def test_defaults_come_from_the_schema_for_cli_and_snakemake_alike(tmp_path):
    path = tmp_path / "minimal.yaml"
    path.write_text("analysis: minimal\ndataset: data/example\n")
    filled = config.load(path)
    assert filled == {"analysis": "minimal", "dataset": "data/example", "description": "", "seed": 0,
                      "model": {"loops_off": [], "fixed": {}, "estimate": None, "asymmetric_shifts": False,
                                "shift_mechanisms": list(parameters.MECHANISMS), "noise": "lognormal",
                                "noise_df": 4},
                      "variants": [], "solver": {}, "simulate": {"n_times": 121, "shifts": {}},
                      "prior": {"shift": "laplace", "shift_scale": 0.5, "horseshoe_global_scale": 0.1,
                                "horseshoe_slab_scale": 3.4, "sigma_scale": 0.3, "integrate_sigma": False, "offset": False,
                                "offset_scale": 0.05},
                      "map": {"starts": 16, "steps": 150, "gtol": 1e-3, "keep": 8},
                      "sampler": {"method": "auto", "chains": 4, "warmup": 500, "samples": 500,
                                  "target_accept": 0.9, "max_tree_depth": 8, "dense_mass": True,
                                  "mass_init": "hessian", "pilot_window": [0.3, 0.8], "adapt_mass": True, "chain_method": "auto",
                                  "init_tolerance": 5.0, "progress": True, "checkpoint_every": 100},
                      "predict": {"resists": {}, "reference_dose_uM": {}, "drugs": None, "doses_uM": {},
                                  "pairs": "middle", "treatments": [], "readouts": ["pPRAS40_T246", "pS6_S240"],
                                  "times_min": [60, 1440], "stimulus": None, "pretreatment_min": None,
                                  "draws": 1000},
                      "design": {"targets": None, "times_min": None, "replicates": 2, "draws": 400, "top": 20},
                      "summary": {"threshold_log2": 1.0}}
    raw = yaml.safe_load(path.read_text())
    snakemake_validate(raw, str(config.SCHEMA_PATH))  # fills defaults in place, as the Snakefile does
    assert raw == filled


def test_cli_prints_filled_config():
    run = subprocess.run([sys.executable, "-m", "pipeline", "config", "config/config.yaml"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert yaml.safe_load(run.stdout) == config.load("config/config.yaml")


BAD = {
    "bad_analysis_name": ("analysis: 'my analysis'\ndataset: data/example\n", ["'analysis'", "'my analysis'", "does not match"]),
    "negative_seed": ("analysis: a\ndataset: data/example\nseed: -3\n", ["'seed'", "-3", "minimum"]),
    "seed_not_integer": ("analysis: a\ndataset: data/example\nseed: one\n", ["'seed'", "'one'", "integer"]),
    "unknown_key": ("analysis: a\ndataset: data/example\nsede: 1\n", ["'sede'", "not a known key", "did you mean 'seed'"]),
    "missing_dataset": ("analysis: a\n", ["'dataset'", "'petab'", "required", "give one"]),
    "dataset_and_petab": ("analysis: a\ndataset: data/example\npetab: p.yaml\n", ["exactly one", "it has 'dataset' and 'petab'"]),
    "petab_not_a_file": ("analysis: a\npetab: nowhere/problem.yaml\n", ["'petab'", "'nowhere/problem.yaml'", "not a file"]),
    "dataset_not_a_folder": ("analysis: a\ndataset: data/nowhere\n", ["'dataset'", "'data/nowhere'", "not a dataset folder"]),
    "not_a_mapping": ("- analysis\n- dataset\n", ["mapping"]),
    "bad_yaml": ("analysis: a\n  dataset: : [\n", ["not valid YAML", "line 2"]),
    "empty": ("", ["is empty"]),
    "bad_solver": ("analysis: a\ndataset: data/example\nsolver: {solver: Tsit5, rtol: 0}\n",
                   ["'solver.solver'", "'Tsit5'", "'solver.rtol'", "less than or equal to the minimum of 0"]),
    "unknown_loop": ("analysis: a\ndataset: data/example\nmodel: {loops_off: [foxo]}\n",
                     ["'model.loops_off.0'", "'foxo'", "did you mean 'foxo_rtk'"]),
    "unknown_fixed_parameter": ("analysis: a\ndataset: data/example\nmodel: {fixed: {kT: 2}}\n",
                                ["'model.fixed.kT'", "not a parameter", "did you mean 'k_T'"]),
    "estimated_and_fixed": ("analysis: a\ndataset: data/example\nmodel: {fixed: {k_T: 2}, estimate: [k_T]}\n",
                            ["'model.estimate'", "'k_T'", "both estimated and fixed"]),
    "negative_fixed_value": ("analysis: a\ndataset: data/example\nmodel: {fixed: {k_T: -1}}\n",
                             ["'model.fixed.k_T'", "-1", "minimum"]),
    "shift_of_unknown_parameter": ("analysis: a\ndataset: data/example\nsimulate: {shifts: {R1: {IC50_MK: 3}}}\n",
                                   ["'simulate.shifts.R1.IC50_MK'", "did you mean 'IC50_MK2206'"]),
    "fixed_shiftable_parameter": ("analysis: a\ndataset: data/example\nmodel: {fixed: {u_R0: 0.01}}\n",
                                  ["'model.fixed.u_R0'", "mapk_compensation shifts it", "false call",
                                   "asymmetric_shifts: true"]),
    "variant_shifts_a_fixed_parameter": (
        "analysis: a\ndataset: data/example\nmodel: {fixed: {X: 0.3}, shift_mechanisms: [pten_loss]}\n"
        "variants: [{name: v, model: {shift_mechanisms: [pim_parallel_kinase]}}]\n",
        ["'variants[0].model.fixed.X'", "pim_parallel_kinase shifts it"]),
    "variant_named_base": ("analysis: a\ndataset: data/example\nvariants: [{name: base, model: {loops_off: []}}]\n",
                           ["'variants.0.name'", "'base'"]),
    "variant_without_model": ("analysis: a\ndataset: data/example\nvariants: [{name: v}]\n", ["'variants.0.model'", "required"]),
    "variant_names_alike": ("analysis: a\ndataset: data/example\nvariants: [{name: v, model: {loops_off: [grb10]}}, "
                            "{name: v, model: {loops_off: [s6k_irs1]}}]\n", ["'variants'", "'v'", "two variants alike"]),
    "integrate_sigma_student_t": ("analysis: a\ndataset: data/example\nmodel: {noise: student_t}\n"
                                  "prior: {integrate_sigma: true}\n",
                                  ["'prior.integrate_sigma'", "only under log-normal noise"]),
    "nuts_and_sampler": ("analysis: a\ndataset: data/example\nnuts: {chains: 2}\nsampler: {chains: 4}\n",
                         ["'nuts'", "both `nuts:` (the old name) and `sampler:`", "delete nuts:"]),
    "old_nuts_bad_key": ("analysis: a\ndataset: data/example\nnuts: {chain: 2}\n",
                         ["'sampler.chain'", "did you mean 'chains'"]),
    "chees_one_chain": ("analysis: a\ndataset: data/example\nsampler: {method: chees, chains: 1}\n",
                        ["'sampler.chains'", "pools the chains", "2 or more"]),
    "chees_in_processes": ("analysis: a\ndataset: data/example\nsampler: {method: chees, chain_method: processes}\n",
                           ["'sampler.chain_method'", "vectorized"]),
    "chees_with_pilot": ("analysis: a\ndataset: data/example\nsampler: {method: chees, mass_init: pilot}\n",
                         ["'sampler.mass_init'", "adapts its own", "method: nuts"]),
    "pilot_window_to_the_end": ("analysis: a\ndataset: data/example\nsampler: {mass_init: pilot, pilot_window: [0.5, 1]}\n",
                                ["'sampler.pilot_window'", "reaches the end of warmup", "[0.3, 0.8]"]),
    "variant_estimates_unknown": ("analysis: a\ndataset: data/example\nvariants: [{name: v, model: {estimate: [kT]}}]\n",
                                  ["'variants[0].model.estimate'", "'kT'", "did you mean 'k_T'"]),
}


@pytest.mark.parametrize("text, expected", BAD.values(), ids=BAD.keys())
def test_bad_config_is_rejected_with_a_clear_message(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError):
        config.load(path)
    run = subprocess.run([sys.executable, "-m", "pipeline", "config", str(path)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr + run.stdout
    assert "bad.yaml" in run.stderr
    for fragment in expected:
        assert fragment in run.stderr, (fragment, run.stderr)


def test_the_deprecated_nuts_section_is_read_as_sampler_with_a_message(tmp_path, capsys):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("analysis: a\ndataset: data/example\nnuts: {chains: 2, warmup: 30}\n")
    new.write_text("analysis: a\ndataset: data/example\nsampler: {chains: 2, warmup: 30}\n")
    assert config.load(old) == config.load(new)
    err = capsys.readouterr().err
    assert err.count("`nuts:` is deprecated") == 1 and "old.yaml" in err
    assert config.load(old)["sampler"]["warmup"] == 30 and "nuts" not in config.load(old)


def test_all_problems_of_a_config_are_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("analysis: 'a b'\ndataset: data/example\nseed: -1\nextra: 2\n")
    with pytest.raises(InputError) as err:
        config.load(path)
    assert sorted(p.key for p in err.value.problems) == ["analysis", "extra", "seed"]


def test_schema_lists_the_network_loops():
    from pipeline.model import network
    from pipeline.yamlschema import schema

    enum = schema("config")["properties"]["model"]["properties"]["loops_off"]["items"]["enum"]
    assert enum == list(network.LOOPS)


def test_variant_values_and_estimated_set(tmp_path):
    from pipeline.model import parameters, variant

    path = tmp_path / "v.yaml"
    path.write_text("analysis: v\ndataset: data/example\nmodel: {loops_off: [foxo_rtk, erk_rtk], fixed: {k_T: 7}}\n")
    cfg = config.load(path)
    values = variant.values(cfg)
    assert values["k_T"] == 7 and values["g_F"] == 0 and values["K_ER"] == float("inf")
    assert values["kd_T"] == parameters.nominal()["kd_T"]
    est = variant.estimated(cfg)
    assert {"k_T", "g_F", "K_ER"}.isdisjoint(est) and "kd_T" in est
    table = parameters.table()
    default = {n for n in parameters.names() if table.loc[n, "estimate"]} - {"k_T", "g_F", "K_ER"}
    shiftable = {n for n in parameters.names() if table.loc[n, "mechanism"]} - {"g_F"}  # foxo_rtk holds g_F
    assert set(est) == default | shiftable and len(est) == len(set(est))
    assert {"u_R0", "w_RR", "k_TE", "k_T0", "b_M1", "phi_b", "rho_PTEN", "alpha_mTOR"} <= set(est)


def test_symmetric_lines_estimate_every_shiftable_parameter_and_the_opt_out_does_not(tmp_path):
    from pipeline.model import variant

    path = tmp_path / "v.yaml"
    path.write_text("analysis: v\ndataset: data/example\n"
                    "model: {estimate: [kd_T], shift_mechanisms: [pten_loss, mapk_compensation]}\n")
    cfg = config.load(path)
    assert variant.estimated(cfg) == ("kd_T", "rho_PTEN", "phi_b", "w_RR", "u_R0", "K_ES")
    assert [p for _, p in variant.shiftable(cfg)] == ["rho_PTEN", "phi_b", "w_RR", "u_R0", "K_ES"]
    cfg["model"]["asymmetric_shifts"] = True
    assert variant.estimated(cfg) == ("kd_T",)
    path.write_text("analysis: v\ndataset: data/example\nmodel: {estimate: [kd_T], fixed: {u_R0: 0.01}, "
                    "shift_mechanisms: [mapk_compensation], asymmetric_shifts: true}\n")
    assert variant.estimated(config.load(path)) == ("kd_T",)  # the opt-in is explicit, and then allowed


def test_hill_slopes_are_estimated_for_drugs_given_at_two_or_more_doses(tmp_path):
    from pipeline.model import variant
    from pipeline.vocabulary import DRUGS

    path = tmp_path / "v.yaml"
    path.write_text("analysis: v\ndataset: data/example\nmodel: {estimate: [kd_T], shift_mechanisms: []}\n")
    cfg = config.load(path)
    doses = np.zeros((5, len(DRUGS)))
    mk, ipa, alp = DRUGS.index("MK2206"), DRUGS.index("ipatasertib"), DRUGS.index("alpelisib")
    doses[1, mk], doses[2, mk], doses[3, mk] = 0.1, 1.0, 1.0  # two doses (one repeated)
    doses[3, ipa] = doses[4, ipa] = 1.0  # one dose, twice
    doses[4, alp] = 0.5
    assert variant.dosed_drugs(doses) == ("MK2206",)
    assert variant.estimated(cfg, doses) == ("kd_T", "h_MK2206")
    cfg["model"]["fixed"] = {"h_MK2206": 1.5}
    assert variant.estimated(cfg, doses) == ("kd_T",)


def test_every_solver_key_is_a_solver_setting():
    import dataclasses

    from pipeline.model import solver
    from pipeline.yamlschema import schema

    keys = schema("config")["properties"]["solver"]["properties"]
    assert set(keys) <= {f.name for f in dataclasses.fields(solver.SolverSettings)}
    assert solver.SolverSettings(**{"rtol": 1e-5, "solver": "Kvaerno4"}).rtol == 1e-5


def test_a_variant_replaces_only_its_model_keys(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"analysis": "a", "dataset": "data/example", "model": {
        "estimate": ["kd_T"], "shift_mechanisms": ["pten_loss", "pim_parallel_kinase"]}, "variants": [
        {"name": "pim_only", "model": {"shift_mechanisms": ["pim_parallel_kinase"]}},
        {"name": "no_foxo", "model": {"loops_off": ["foxo_rtk"]}}]}))
    cfg = config.load(path)
    assert config.variant(cfg, "base") is cfg
    pim = config.variant(cfg, "pim_only")
    assert pim["model"] == cfg["model"] | {"shift_mechanisms": ["pim_parallel_kinase"]} and pim["variants"] == []
    assert config.variant(cfg, "no_foxo")["model"]["loops_off"] == ["foxo_rtk"]
    assert cfg["model"]["loops_off"] == [] and cfg["model"]["shift_mechanisms"] == ["pten_loss", "pim_parallel_kinase"]
    with pytest.raises(InputError, match="no variant 'pim'"):
        config.variant(cfg, "pim")
