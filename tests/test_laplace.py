"""The MAP's Laplace reading of what the data inform (pipeline.inference.laplace), against closed forms."""

import numpy as np
import pytest
import scipy.special

from pipeline.inference import laplace


def test_a_ridge_is_the_sloppiest_direction_with_its_closed_form_contraction():
    """-log p = prior (unit Gaussian) + the data's 100 (u0 + u1)^2 / 2 + 99 u2^2 / 2: the data fix u0 + u1 and u2,
    not u0 - u1. Whitened eigenvalues 1, 100 and 201; per coordinate the Laplace variance of u0 is
    (1 + 1/201) / 2, so its contraction is 1 - (1 + 1/201) / 2; u2's is 1 - 1/100."""
    a = np.array([1.0, 1.0, 0.0])
    hess = np.eye(3) + 100.0 * np.outer(a, a) + np.diag([0.0, 0.0, 99.0])
    out = laplace.analyse(hess, ["k_T", "kd_T", "X"], np.ones(3))
    assert out["contraction"]["k_T"] == pytest.approx(1 - (1 + 1 / 201) / 2, abs=1e-4)
    assert out["contraction"]["kd_T"] == pytest.approx(1 - (1 + 1 / 201) / 2, abs=1e-4)
    assert out["contraction"]["X"] == pytest.approx(0.99, abs=1e-4)
    assert out["weak"] == ["k_T", "kd_T"]
    sloppiest = out["sloppy_directions"][0]
    assert sloppiest["eigenvalue"] == pytest.approx(1.0) and sloppiest["contraction"] == 0.0
    assert sloppiest["loadings"] == {"k_T": pytest.approx(0.707, abs=1e-3), "kd_T": pytest.approx(-0.707, abs=1e-3)}
    assert laplace.describe(sloppiest) == "0.71 k_T - 0.71 kd_T"
    assert [d["eigenvalue"] for d in out["sloppy_directions"]] == pytest.approx([1.0, 100.0, 201.0])
    assert out["sloppy_directions"][1]["loadings"] == {"X": 1.0}


def test_whitening_by_the_prior_and_the_floor():
    """A coordinate with prior variance 4 whose curvature is the prior's alone (1/4) is uninformed; a negative
    curvature (the kink of a Laplace prior, or a saddle) reads as uninformed too, never as more than informed."""
    hess = np.diag([0.25, -3.0, 40.0])
    out = laplace.analyse(hess, ["a", "b", "c"], np.array([4.0, 1.0, 1.0]))
    assert out["contraction"] == {"a": pytest.approx(0.0, abs=1e-12), "b": 0.0, "c": pytest.approx(1 - 1 / 40)}
    assert laplace.analyse(np.full((2, 2), np.nan), ["a", "b"], np.ones(2)) == {}


def test_prior_variance_of_the_blot_model_matches_its_priors():
    """From prior draws of the blot model: log-normal coordinates 1, Beta (logit) trigamma(a) + trigamma(b),
    Laplace shifts 2, log of a half-normal sigma pi^2 / 8, within Monte Carlo error of 4000 draws."""
    import jax

    from pipeline import config as config_mod
    from pipeline import fit
    from pipeline.blots import dataset, ingest
    from test_fit import ONE_SHIFT

    cfg = config_mod.load({"analysis": "t", "dataset": str(ONE_SHIFT),
                               "model": {"estimate": ["kd_T", "c_T"], "shift_mechanisms": ["pim_parallel_kinase"]}})
    m = fit.model(cfg, ingest.to_xarray(dataset.load(ONE_SHIFT)))
    var = dict(zip(m.coords, m.prior_variance(jax.random.PRNGKey(0))))
    want = {"kd_T": 1.0, "c_T": scipy.special.polygamma(1, 2) + scipy.special.polygamma(1, 18), "X": 1.0,
            "shift:identical:X": 2.0, "shift:resistant:X": 2.0,
            **{c: np.pi ** 2 / 8 for c in m.coords if c.startswith("log_sigma:")}}  # Var log|N(0, s^2)|
    assert set(var) == set(want)
    for name, x in want.items():
        assert var[name] == pytest.approx(x, rel=0.12), name
