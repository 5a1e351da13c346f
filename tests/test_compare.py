"""The compare stage against exact leave-one-out: for a normal mean with known noise and a normal prior
the leave-one-out predictive density of every point is closed form, so PSIS-LOO's elpd and the ranking
of two variants can be checked against truth; an outlier must raise a Pareto-k warning."""

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline import cli
from pipeline.outputs import compare

SIGMA, PRIOR_MEAN, PRIOR_SD = 0.5, 0.0, 2.0


def _posterior_idata(y, rng, prior_mean=PRIOR_MEAN, prior_sd=PRIOR_SD, chains=4, draws=2000):
    """Exact posterior draws of mu (conjugate), with the per-point log-likelihood, as `fit` writes them."""
    prec = 1 / prior_sd**2 + len(y) / SIGMA**2
    mean = (prior_mean / prior_sd**2 + y.sum() / SIGMA**2) / prec
    mu = rng.normal(mean, prec**-0.5, (chains, draws))
    log_lik = stats.norm.logpdf(y[None, None, :], mu[..., None], SIGMA)
    return az.from_dict(posterior={"mu": mu}, log_likelihood={"y": log_lik}, observed_data={"y": y},
                        dims={"y": ["measurement"]})


def _exact_elpd_loo(y, prior_mean=PRIOR_MEAN, prior_sd=PRIOR_SD):
    total = 0.0
    for i in range(len(y)):
        rest = np.delete(y, i)
        prec = 1 / prior_sd**2 + len(rest) / SIGMA**2
        mean = (prior_mean / prior_sd**2 + rest.sum() / SIGMA**2) / prec
        total += stats.norm.logpdf(y[i], mean, np.sqrt(SIGMA**2 + 1 / prec))
    return total


@pytest.fixture
def data():
    return np.random.default_rng(0).normal(1.0, SIGMA, 30)


def test_elpd_loo_and_ranking_match_exact_leave_one_out(data):
    rng = np.random.default_rng(1)
    # "tight": a prior that puts mu near 3 (wrong): it must rank second by the exact difference
    tight = dict(prior_mean=3.0, prior_sd=0.1)
    table = compare.compare({"right": _posterior_idata(data, rng), "tight": _posterior_idata(data, rng, **tight)})
    assert list(table.columns) == compare.COLUMNS
    assert list(table["variant"]) == ["right", "tight"] and list(table["rank"]) == [1, 2]
    exact = {"right": _exact_elpd_loo(data), "tight": _exact_elpd_loo(data, **tight)}
    rows = table.set_index("variant")
    # importance-sampling error: 0.004 for "right"; 0.09 for "tight", whose LOO posteriors sit in the tail of
    # its posterior (0.04 with 10x the draws): both far below the elpd's own standard error (2.8, 9.3)
    for name, tol in (("right", 0.02), ("tight", 0.15)):
        assert rows.loc[name, "elpd_loo"] == pytest.approx(exact[name], abs=tol), name
    assert rows.loc["tight", "elpd_diff"] == pytest.approx(exact["right"] - exact["tight"], abs=0.15)
    assert rows.loc["right", "elpd_diff"] == 0.0
    prec = 1 / PRIOR_SD**2 + len(data) / SIGMA**2  # lppd - elpd_loo, both closed form
    mean = (PRIOR_MEAN / PRIOR_SD**2 + data.sum() / SIGMA**2) / prec
    lppd = stats.norm.logpdf(data, mean, np.sqrt(SIGMA**2 + 1 / prec)).sum()
    assert rows.loc["right", "p_loo"] == pytest.approx(lppd - exact["right"], abs=0.03)
    assert (table["pareto_k_bad"] == 0).all()
    assert rows.loc["right", "weight"] > 0.9


def test_an_influential_outlier_raises_a_pareto_k_warning(data):
    rng = np.random.default_rng(2)
    y = np.append(data[:6], 12.0)  # 22 sd away: its leave-one-out posterior differs hugely from the full one
    table = compare.compare({"a": _posterior_idata(y, rng), "b": _posterior_idata(y, rng, prior_sd=1.0)})
    assert (table["pareto_k_bad"] >= 1).all()
    assert (table["pareto_k_max"] > table["pareto_k_threshold"]).all()
    from pipeline.outputs import report

    page = report.comparison_html(table)
    assert "Pareto k &gt;" in page and "unreliable" in page


def test_compare_command_writes_the_table_and_rejects_other_data(tmp_path, data, capsys):
    rng = np.random.default_rng(3)
    paths = {}
    for name, y in (("a", data), ("b", data), ("other", data + 1.0)):
        paths[name] = tmp_path / f"{name}.nc"
        _posterior_idata(y, rng, draws=500).to_netcdf(str(paths[name]))
    out = tmp_path / "compare.csv"
    assert cli.main(["compare", f"a={paths['a']}", f"b={paths['b']}", "--out", str(out)]) == 0
    assert set(pd.read_csv(out)["variant"]) == {"a", "b"}
    assert cli.main(["compare", f"a={paths['a']}", f"other={paths['other']}", "--out", str(tmp_path / "x.csv")]) == 2
    assert cli.main(["compare", f"a={paths['a']}", str(paths["b"]), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "other.nc" in err and "fitted to other data" in err and "is not VARIANT=POSTERIOR" in err
    assert not (tmp_path / "x.csv").exists()
