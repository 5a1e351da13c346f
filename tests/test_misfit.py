"""The misfit check (pipeline.outputs.misfit) and its report section against planted truth, without an ODE fit.

The planted posterior is a linear-Gaussian model on the log scale, log y = X theta + sigma eps with a
normal prior on theta and known sigma, whose posterior is exactly normal: the draws are exact, and the
posterior without some read-outs is known in closed form, so the case-deletion reweighting is checked
against it.
"""

import json

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from pipeline.outputs import misfit, report

LN2 = np.log(2.0)
PARAMS = ["a", "dA", "dB"]  # a log level; two log2 fold changes of the resistant line
MECHANISMS = {"dA": "mech_a", "dB": "mech_b"}
PRIOR_SD = np.array([10.0, 1.0, 1.0])
TIMES = np.array([5.0, 15.0, 30.0, 60.0])


def _readout(line, condition, target, row, sigma, extra=None, noise=True):
    """One read-out of 4 bands: its design row (coefficients on PARAMS), noise sigma and planted deviation."""
    return {"line": line, "condition": condition, "target": target, "row": row, "sigma": sigma,
            "extra": np.zeros(len(TIMES)) if extra is None else np.asarray(extra, float), "noise": noise}


def _posterior(x, sigma, log_y, keep):
    """Exact normal posterior (mean, covariance) of theta from the bands `keep`."""
    w = 1.0 / sigma[keep] ** 2
    precision = (x[keep].T * w) @ x[keep] + np.diag(1.0 / PRIOR_SD**2)
    cov = np.linalg.inv(precision)
    return cov @ ((x[keep].T * w) @ log_y[keep]), cov


def planted(readouts, theta, seed=0, chains=4, draws=1000):
    """(InferenceData laid out as `fit` writes it, exact posterior (mean, cov), band arrays)."""
    rng = np.random.default_rng(seed)
    n = len(TIMES)
    x = np.repeat(np.array([r["row"] for r in readouts], float), n, axis=0)
    sigma = np.repeat([r["sigma"] for r in readouts], n)
    extra = np.concatenate([r["extra"] for r in readouts])
    noisy = np.repeat([r["noise"] for r in readouts], n)
    log_y = x @ theta + extra + noisy * sigma * rng.normal(size=len(x))
    mean, cov = _posterior(x, sigma, log_y, np.ones(len(x), bool))
    s = chains * draws
    th = rng.multivariate_normal(mean, cov, size=s)
    mu = th @ x.T
    log_lik = stats.norm.logpdf(log_y, mu, sigma) - log_y
    y_rep = np.exp(mu + sigma * rng.normal(size=mu.shape))
    shape = lambda a: a.reshape((chains, draws) + a.shape[1:])  # noqa: E731

    targets = list(dict.fromkeys(r["target"] for r in readouts))
    lines = list(dict.fromkeys(r["line"] for r in readouts))
    conditions = list(dict.fromkeys(r["condition"] for r in readouts))
    line_of = {r["condition"]: r["line"] for r in readouts}
    band = {"condition_id": np.repeat([r["condition"] for r in readouts], n).astype(object),
            "target": np.repeat([r["target"] for r in readouts], n).astype(object),
            "time_min": np.tile(TIMES, len(readouts)),
            "blot_id": np.repeat([f"{r['line']}_blot" for r in readouts], n).astype(object)}
    scales = list(dict.fromkeys(f"{b}|{t}" for b, t in zip(band["blot_id"], band["target"])))
    sigma_t = {r["target"]: r["sigma"] for r in readouts}
    fc = th[:, None, 1:] if len(lines) > 1 else np.zeros((s, 0, 0))
    idata = az.from_dict(
        posterior={"k_TE": shape(np.exp(th[:, 0])), "log2_fc": shape(fc),
                   "sigma": shape(np.tile([sigma_t[t] for t in targets], (s, 1))),
                   "log_scale": shape(np.zeros((s, len(scales))))},
        sample_stats={"energy": rng.normal(size=(chains, draws)), "tree_depth": np.full((chains, draws), 3),
                      "diverging": np.zeros((chains, draws), bool)},
        log_likelihood={"y": shape(log_lik)}, posterior_predictive={"y": shape(y_rep)},
        observed_data={"y": np.exp(log_y)},
        coords={"cell_line": lines[1:], "shift_parameter": PARAMS[1:] if len(lines) > 1 else [],
                "target": targets, "scale": scales, "measurement": np.arange(len(x))},
        dims={"log2_fc": ["cell_line", "shift_parameter"], "sigma": ["target"], "log_scale": ["scale"],
              "y": ["measurement"]})
    idata.posterior = idata.posterior.assign_coords(
        mechanism=("shift_parameter", [MECHANISMS[p] for p in idata.posterior["shift_parameter"].values]))
    idata.posterior.attrs.update({"reference_line": lines[0], "estimated": ["k_TE"]})
    for group in ("observed_data", "log_likelihood", "posterior_predictive"):
        setattr(idata, group, getattr(idata, group).assign_coords({k: ("measurement", a) for k, a in band.items()}))
    const = xr.Dataset(
        {"dose_uM": (("condition", "drug"), np.zeros((len(conditions), 1)))},
        coords={"condition": np.array(conditions, object), "drug": np.array(["MK2206"], object),
                "cell_line": ("condition", np.array([line_of[c] for c in conditions], object)),
                "stimulus": ("condition", np.array(["IGF1"] * len(conditions), object)),
                "stimulus_conc": ("condition", np.full(len(conditions), 10.0)),
                "pretreatment_min": ("condition", np.full(len(conditions), 60.0)),
                **{k: ("measurement", a) for k, a in band.items()}, "measurement": np.arange(len(x))},
        attrs={"name": "planted", "description": "linear-Gaussian planted posterior", "reference_line": lines[0],
               "source": "tests/test_misfit.py"})
    idata.add_groups(constant_data=const)
    return idata, (mean, cov), {"x": x, "sigma": sigma, "log_y": log_y}


def _null(n_readouts, seed, bad=None):
    readouts = [_readout("parental", f"c{i:03d}", "pAKT", [1, 0, 0], 0.3) for i in range(n_readouts)]
    if bad is not None:
        readouts[bad] = _readout("parental", f"c{bad:03d}", "pAKT", [1, 0, 0], 0.3, extra=[1.2, -1.2, 1.2, -1.2])
    return planted(readouts, np.array([1.0, 0.0, 0.0]), seed=seed, chains=2, draws=500)[0]


def test_p_values_are_uniform_when_the_model_is_right():
    # 200 read-outs share one well-determined level: each read-out barely moves the fit, so its
    # posterior-predictive p-value is (nearly) uniform and 1 % are flagged by chance
    table = misfit.check(_null(200, seed=1))
    p = table["p_value"].to_numpy()
    assert len(p) == 200 and (table["bands"] == 4).all()
    for level in (0.05, 0.2, 0.5):
        lo, hi = stats.binom.ppf([0.0005, 0.9995], 200, level)
        assert lo <= np.sum(p < level) <= hi, level
    assert stats.kstest(p, "uniform").pvalue > 0.001
    assert table["flagged"].sum() <= stats.binom.ppf(0.999, 200, misfit.MISFIT_P)
    # the statistic is the sum of squared standardised log residuals: its posterior mean is about n = 4
    assert abs(table["t_observed"].mean() - 4.0) < 0.3


def test_a_read_out_planted_far_off_is_flagged_and_the_others_are_not():
    table = misfit.check(_null(60, seed=2, bad=17))
    first = table.iloc[0]
    assert first["condition_id"] == "c017" and first["flagged"] and first["p_value"] < 1e-8
    assert first["q_value"] < misfit.FDR_Q and np.isfinite(first["pareto_k"])
    others = table[table["condition_id"] != "c017"]
    assert others["flagged"].sum() <= stats.binom.ppf(0.999, 59, misfit.MISFIT_P)
    assert others["p_value"].min() > 1e-4


def test_bh_qvalues_match_the_step_up_rule():
    p = np.array([0.001, 0.04, 0.03, 0.5, 0.012])
    q = misfit.bh_qvalues(p)
    np.testing.assert_allclose(q, [0.005, 0.05, 0.05, 0.5, 0.03])


def _shift_case(seed=3):
    """Parental: 20 read-outs of the level a. Resistant: mech_b's dB = 2 (log2) seen in 4 read-outs that fit;
    mech_a's dA seen only in read-out F, whose bands zig-zag far beyond their noise (misfit), with a
    mean that says dA = 4.5."""
    readouts = [_readout("parental", f"p{i:02d}", "pAKT", [1, 0, 0], 0.3) for i in range(20)]
    readouts += [_readout("resistant", f"r{i}", "pS6", [1, 0, LN2], 0.3) for i in range(4)]
    sigma_f = np.sqrt(len(TIMES) * LN2**2 / 0.35)  # F alone gives dA a precision of 0.35 (prior: 1)
    readouts.append(_readout("resistant", "F", "pERK", [1, LN2, 0], sigma_f, extra=[7, -7, 7, -7], noise=False))
    return planted(readouts, np.array([1.0, 4.5, 2.0]), seed=seed)


def test_a_shift_resting_on_the_flagged_read_out_is_warned_about_and_the_other_is_not():
    idata, _, bands = _shift_case()
    table = misfit.check(idata)
    assert table.iloc[0]["condition_id"] == "F" and table.iloc[0]["p_value"] < 1e-6
    assert set(table.loc[table["flagged"], "condition_id"]) == {"F"}
    sens, k = misfit.shift_sensitivity(idata, table, threshold_log2=1.0)
    sens = sens.set_index("parameter")
    # truth: the exact posterior of dA without F's bands (here its prior, N(0, 1))
    keep = np.array([c != "F" for c in idata.observed_data["condition_id"].values])
    mean, cov = _posterior(bands["x"], bands["sigma"], bands["log_y"], keep)
    sd = np.sqrt(cov[1, 1])
    truth = stats.norm.sf(1.0, mean[1], sd) + stats.norm.cdf(-1.0, mean[1], sd)
    assert truth == pytest.approx(0.317, abs=0.01)
    assert k < misfit.PARETO_K_MAX
    a, b = sens.loc["dA"], sens.loc["dB"]
    assert a["prob_shift"] >= 0.55 and a["prob_shift_without"] == pytest.approx(truth, abs=0.07)
    assert a["median_log2_fc_without"] == pytest.approx(mean[1], abs=0.15)
    assert a["warn"] and a["mechanism"] == "mech_a"
    assert b["prob_shift"] > 0.99 and b["prob_shift_without"] > 0.99 and not b["warn"]
    said = misfit.warnings(sens.reset_index(), n_flagged=1)
    assert len(said) == 1 and said[0].startswith("resistant, mech_a:") and "student_t" in said[0]
    assert "reliable" in misfit.reliability(k) and "unreliable" in misfit.reliability(0.9)


def test_deletion_weights_recover_a_known_posterior():
    # prior N(0, 1) x likelihood exp(-(x - 1)^2 / 2) = posterior N(0.5, 1/2); removing that likelihood
    # (weights exp(+(x - 1)^2 / 2)) turns posterior draws back into N(0, 1) draws
    rng = np.random.default_rng(4)
    x = rng.normal(0.5, np.sqrt(0.5), size=(4, 2000))
    w, k = misfit.deletion_weights(-0.5 * (x - 1.0) ** 2)
    assert np.sum(w * x.ravel()) == pytest.approx(0.0, abs=0.07)
    assert np.sum(w * x.ravel() ** 2) == pytest.approx(1.0, abs=0.12)
    assert 0.0 < k < 0.7 and w.sum() == pytest.approx(1.0)


def test_residuals_are_chi2_one_given_theta_under_either_noise_model():
    rng = np.random.default_rng(6)
    mu, sigma = rng.normal(size=20000), rng.uniform(0.1, 1.0, 20000)
    z = rng.normal(size=20000)
    log_y = mu + sigma * z
    ll = stats.norm.logpdf(log_y, mu, sigma) - log_y
    np.testing.assert_allclose(misfit.squared_residuals(ll[None], log_y, sigma[None])[0], z**2, atol=1e-9)
    eps = rng.standard_t(3.0, 20000)
    log_y = mu + sigma * eps
    ll = stats.t.logpdf(log_y, 3.0, mu, sigma) - log_y
    q = misfit.squared_residuals(ll[None], log_y, sigma[None], noise="student_t", df=3.0)[0]
    assert stats.kstest(q, stats.chi2(1).cdf).pvalue > 0.001
    # the same 6-sigma band: rare under a normal, common enough under t(2)
    one = lambda noise, logpdf: misfit.squared_residuals(np.array([[logpdf - 6.0]]), np.array([6.0]),  # noqa: E731
                                                         np.array([[1.0]]), noise, 2.0)[0, 0]
    assert one("lognormal", stats.norm.logpdf(6.0)) == pytest.approx(36.0)
    assert one("student_t", stats.t.logpdf(6.0, 2.0)) == pytest.approx(stats.norm.isf(stats.t.sf(6.0, 2.0)) ** 2)
    assert misfit.check(_null(5, seed=5), noise="gamma") is None


def test_the_report_shows_the_misfit_section(tmp_path):
    idata, _, _ = _shift_case()
    idata.to_netcdf(tmp_path / "posterior.nc")
    fc = idata.posterior["log2_fc"].stack(sample=("chain", "draw"))
    pd.DataFrame([{"cell_line": "resistant", "mechanism": MECHANISMS[p], "parameter": p,
                   "median_log2_fc": float(np.median(fc.sel(shift_parameter=p)[0])), "ci90_low": 0.0,
                   "ci90_high": 0.0, "prob_shift": float(np.mean(np.abs(fc.sel(shift_parameter=p)[0]) > 1))}
                  for p in ("dA", "dB")]).to_csv(tmp_path / "shifts.csv", index=False)
    (tmp_path / "diagnostics.json").write_text(json.dumps(
        {"chains": 4, "draws": 1000, "max_rhat": 1.0, "min_ess_bulk": 4000.0, "min_ess_tail": 4000.0,
         "divergences": 0, "solver_failures": 0, "mean_steps_per_iteration": 3.0, "gradient_evaluations": 12000,
         "wall_s": 1.0, "ess_bulk_per_s": 4000.0}))
    config = {"analysis": "planted", "summary": {"threshold_log2": 1.0}, "sampler": {"max_tree_depth": 8}, "model": {}}
    page = report.write(config, tmp_path).read_text(encoding="utf-8")
    section = page[page.index("<h2>Misfit"):]
    assert "1 of 25 read-outs flagged" in section and "about 0.2" in section
    assert "<td>F</td>" in section and "<td>pERK</td>" in section
    assert "<b>Warning</b>: resistant, mech_a:" in section and section.count("<b>Warning</b>") == 1
    assert "student_t" in section and "Pareto k" in section
    assert (tmp_path / "figures" / "misfit.png").is_file()
    written = pd.read_csv(tmp_path / "misfit.csv")
    assert list(written.columns[:3]) == ["cell_line", "condition_id", "target"] and len(written) == 25
    assert written.iloc[0]["condition_id"] == "F" and bool(written.iloc[0]["flagged"])
    assert not list(tmp_path.glob(".*.part"))
