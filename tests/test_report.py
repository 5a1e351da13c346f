"""The convergence checks of the report against planted sampler output, and the report command's errors.
The report of a real fit, and its figures against posterior.nc, are tested in tests/test_fit.py."""

import arviz as az
import numpy as np
import pytest
import yaml

from pipeline import cli
from pipeline.outputs import diagnose

GOOD = {"chains": 2, "draws": 500, "max_rhat": 1.003, "min_ess_bulk": 800.0, "min_ess_tail": 600.0,
        "divergences": 0, "solver_failures": 0, "mean_steps_per_iteration": 7.0}


def _idata(energy, tree_depth):
    return az.from_dict(sample_stats={"energy": energy, "tree_depth": tree_depth})


def test_a_healthy_fit_passes_every_check():
    rng = np.random.default_rng(0)
    idata = _idata(rng.normal(size=(2, 500)), np.full((2, 500), 3))
    found = diagnose.checks(idata, GOOD, max_tree_depth=8)
    assert [c.status for c in found] == [diagnose.OK] * len(found)
    assert diagnose.verdict(found)[0] == diagnose.OK


def test_ebfmi_is_the_energy_formula_and_a_sticky_energy_fails():
    rng = np.random.default_rng(1)
    sticky = np.cumsum(rng.normal(size=(2, 500)), axis=1)  # a random walk: successive energies barely change
    found = {c.name: c for c in diagnose.checks(_idata(sticky, np.full((2, 500), 3)), GOOD, 8)}
    want = [np.sum(np.diff(e) ** 2) / np.sum((e - e.mean()) ** 2) for e in sticky]  # Betancourt 2017, eq. 3.1
    shown = [float(x) for x in found["E-BFMI (min over chains)"].value.split(", ")]
    np.testing.assert_allclose(shown, want, atol=0.005)
    assert max(want) < diagnose.EBFMI_MIN and found["E-BFMI (min over chains)"].status == diagnose.BAD


@pytest.mark.parametrize("change, name, status, advice", [
    ({"max_rhat": 1.03}, "R-hat (max)", diagnose.CAUTION, "longer chains"),
    ({"max_rhat": 1.2}, "R-hat (max)", diagnose.BAD, "disagree"),
    ({"min_ess_tail": 150.0}, "ESS tail (min)", diagnose.CAUTION, "sampler.samples; about 667 per chain"),
    ({"divergences": 3}, "Divergences", diagnose.CAUTION, "sampler.target_accept"),
    ({"divergences": 40}, "Divergences", diagnose.BAD, "sampler.target_accept"),
    ({"solver_failures": 25}, "Solver failures (sampling)", diagnose.BAD, "solver.max_steps"),
])
def test_each_failed_check_says_what_to_do(change, name, status, advice):
    idata = _idata(np.random.default_rng(2).normal(size=(2, 500)), np.full((2, 500), 3))
    found = {c.name: c for c in diagnose.checks(idata, GOOD | change, 8)}
    assert found[name].status == status and advice in found[name].message
    others = [c.status for n, c in found.items() if n != name]
    assert others == [diagnose.OK] * len(others)
    overall, sentence = diagnose.verdict(list(found.values()))
    assert overall == status and name in sentence


def test_trajectories_cut_at_the_maximum_tree_depth_are_reported():
    depth = np.full((2, 500), 3)
    depth[:, :100] = 6  # 20 % at the maximum
    idata = _idata(np.random.default_rng(3).normal(size=(2, 500)), depth)
    found = {c.name: c for c in diagnose.checks(idata, GOOD, max_tree_depth=6)}
    check = found["Iterations at max tree depth"]
    assert check.status == diagnose.BAD and check.value.startswith("20 %") and "max_tree_depth" in check.message


def test_report_command_names_the_missing_outputs(tmp_path, capsys):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump({"analysis": "a", "dataset": "tests/data/one_shift"}))
    assert cli.main(["report", "a", "--config", str(cfg), "--results", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    for name in ("posterior.nc", "shifts.csv", "diagnostics.json"):
        assert name in err
    assert "run the fit first" in err
    assert cli.main(["report", "b", "--config", str(cfg)]) == 2
    assert "not 'b'" in capsys.readouterr().err
    assert not list(tmp_path.glob("none/*"))


def test_the_report_says_what_is_held_and_what_could_be():
    """Held: the config's model.fixed; could be held: barely informed estimated parameters that no mechanism
    shifts (a shifted one is estimated in every line)."""
    from pipeline.outputs import report

    idata = az.from_dict(posterior={"kd_T": np.ones((1, 4)), "X": np.ones((1, 4)), "log2_fc": np.zeros((1, 4, 1, 1))},
                         coords={"cell_line": ["R"], "shift_parameter": ["X"]},
                         dims={"log2_fc": ["cell_line", "shift_parameter"]})
    idata.posterior.attrs["estimated"] = ["kd_T", "X"]
    text = report._held({"model": {"fixed": {"c_T": 0.2}}}, idata, ["log kd_T", "log X"])
    assert "c_T = 0.2" in text and "kd_T could be held" in text and "X could" not in text
    assert "none" in report._held({"model": {"fixed": {}}}, idata, []) and "could be held" not in \
        report._held({"model": {"fixed": {}}}, idata, ["log X"])


def _posterior(centres, shift_centres, rng, draws=400):
    """InferenceData with parameters ~ N(centre per chain, 0.3) and log2_fc[line, shift] ~ N(centre per chain, 0.3)."""
    centres = {k: np.asarray(v, float) for k, v in centres.items()}
    chains = len(next(iter(centres.values())))
    post = {k: c[:, None] + 0.3 * rng.normal(size=(chains, draws)) for k, c in centres.items()}
    shift = np.asarray(shift_centres, float)  # (chain, shift)
    post["log2_fc"] = shift[:, None, None, :] + 0.3 * rng.normal(size=(chains, draws, 1, shift.shape[1]))
    lp = np.arange(chains)[:, None] * -3.5 - 620.0 + rng.normal(size=(chains, draws))
    return az.from_dict(posterior=post, sample_stats={"energy": rng.normal(size=(chains, draws)), "lp": lp},
                        coords={"cell_line": ["R"], "shift_parameter": ["IC50_MK2206", "X"]},
                        dims={"log2_fc": ["cell_line", "shift_parameter"]})


def test_chains_of_one_region_pass_the_mode_check():
    rng = np.random.default_rng(4)
    centres = {f"p{i}": np.zeros(4) for i in range(100)}  # 4 chains x 50 draws of 102 coordinates, one region
    idata = _posterior(centres, np.zeros((4, 2)), rng, draws=diagnose.MODE_MIN_DRAWS)
    found = {c.name: c for c in diagnose.checks(idata, GOOD, 8)}
    assert found["Chains in separate modes"].status == diagnose.OK


def test_chains_in_separate_modes_are_named_with_their_shift_calls():
    rng = np.random.default_rng(5)
    # the PTEN / AKT-dephosphorylation trade-off: chain 0 low rho_PTEN and high kd_T, chain 1 the other way
    same_calls = _posterior({"rho_PTEN": [-2.5, 2.3], "kd_T": [0.7, -2.3], "alpha_mTOR": [0.0, 0.2]},
                            [[3.0, 0.0], [3.2, 0.1]], rng)
    check = {c.name: c for c in diagnose.checks(same_calls, GOOD, 8)}["Chains in separate modes"]
    assert check.status == diagnose.BAD and check.value == "2 coordinates"
    assert "rho_PTEN (chain medians -2.5" in check.message and "kd_T (chain medians 0.7" in check.message
    assert "alpha_mTOR" not in check.message
    assert "Mean log density per chain: -620.0, -623.5" in check.message
    assert "same in every chain (R IC50_MK2206)" in check.message
    assert diagnose.verdict(diagnose.checks(same_calls, GOOD, 8))[0] == diagnose.BAD

    # the modes differ in what they call: the mode-dependent shift is named per chain, and is itself a gap
    other_calls = _posterior({"rho_PTEN": [-2.5, 2.3]}, [[3.0, 0.0], [0.0, 3.0]], rng)
    check = {c.name: c for c in diagnose.checks(other_calls, GOOD, 8)}["Chains in separate modes"]
    assert "depend on the mode: chain 0: R IC50_MK2206; chain 1: R X" in check.message
    assert "log2_fc[R,IC50_MK2206]" in check.message and check.value == "3 coordinates"
    # the threshold is the config's: at |log2 FC| > 4 no chain calls anything
    check = {c.name: c for c in diagnose.checks(other_calls, GOOD, 8, threshold_log2=4.0)}["Chains in separate modes"]
    assert "same in every chain (none)" in check.message
