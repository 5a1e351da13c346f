"""`predict` and `design` (pipeline/decide/): the candidate treatments, the nested Monte Carlo estimate of the
expected information against a closed form, and the seeds' biology on planted lines.

The planted lines' "posteriors" are draws around known parameters: every kinetic parameter of both lines
jittered alike (log-normal, sd 0.1) and the planted fold of the resistant line (as `synthetic` plants it)
jittered on its own. Predict and design read nothing else of a posterior, so this checks what they make of one
without the cost of a fit (the stages end to end on a fitted posterior: tests/test_fit.py).
"""

import math

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import scipy.stats
import xarray as xr
import yaml

from pipeline import cli, config
from pipeline.decide import design, predict, treatments as tr
from pipeline.model import observation, parameters
from pipeline import vocabulary as v

NAMES = parameters.names()
BASE = np.array([parameters.nominal()[n] for n in NAMES])
KINETIC = np.array([not parameters.is_fraction(n) for n in NAMES])
# one candidate set and one time grid for every test here: one compile of the simulation
CANDIDATE_CFG = {"drugs": ["alpelisib", "MK2206", "ipatasertib", "everolimus", "AZD8055", "RapaLink1", "AZD1208"],
                 "doses_uM": {}, "pairs": "middle", "treatments": []}
TIMES = [0.0, 15.0, 60.0, 240.0, 1440.0]
DRAWS = 40


def planted(fold: dict, n: int = DRAWS, seed: int = 0, sd: float = 0.1, fold_sd: float = 0.2) -> np.ndarray:
    """[n, 2, P]: (parental, resistant) parameter vectors around the table's values, the resistant line with
    `fold` applied."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parental = BASE * np.exp(sd * rng.standard_normal(len(BASE)) * KINETIC)
        resistant = parental.copy()
        for name, f in fold.items():
            resistant[NAMES.index(name)] *= f * math.exp(fold_sd * rng.standard_normal())
        out.append(np.stack([parental, resistant]))
    return np.array(out)


@pytest.fixture(scope="module")
def candidates():
    return tr.candidates(CANDIDATE_CFG)


def reversal(values, candidates, drug, dose) -> pd.DataFrame:
    """reversal.csv's rows for one resistant line 'R' that resists `drug`, the parental under it at `dose`."""
    obs, ok = predict.simulate_draws(values, candidates, TIMES, "IGF1", 60.0)
    readouts = ["pPRAS40_T246", "pS6_S240"]
    pred = xr.Dataset({"prediction": (("draw", "cell_line", "treatment", "time_min", "readout"),
                                      obs[..., [v.TARGETS.index(r) for r in readouts]]),
                       "ok": (("draw", "cell_line", "treatment"), ok)},
                      coords={"cell_line": ["parental", "R"], "treatment": [tr.name(t) for t in candidates],
                              "time_min": TIMES, "readout": readouts})
    assert ok.all()
    return predict.reversal(pred, {"R": drug}, {drug: {drug: dose}}, "parental")


def row(table, treatment, readout="pPRAS40_T246", time=60.0):
    (r,) = table[(table.treatment == treatment) & (table.readout == readout) & (table.time_min == time)].itertuples()
    return r


# ---- candidates -----------------------------------------------------------------------------------------------
def test_candidates_are_vehicle_single_drugs_over_their_grid_and_pairs_at_middle_doses():
    from pipeline.model import drugs

    cfg = {"drugs": None, "doses_uM": {"MK2206": [1.0, 0.1]}, "pairs": "middle",
           "treatments": [{"MK2206": 1.0, "AZD1208": 3.0}, {"MK2206": 1.0}]}
    got = tr.candidates(cfg)
    n_single = sum(len(drugs.doses(d)) for d in v.DRUGS if d != "MK2206") + 2
    n_pairs = len(v.DRUGS) * (len(v.DRUGS) - 1) // 2
    assert got[0] == {} and tr.name(got[0]) == "vehicle"
    assert len(got) == 1 + n_single + n_pairs + 1  # the user's MK2206 1 uM is already a single: once
    assert {"MK2206": 0.1} in got and {"MK2206": 0.3} not in got
    assert {"ipatasertib": 1.0, "AZD1208": 1.0} in got  # middle of 0.03..10 and 0.1..10
    assert tr.name({"AZD1208": 1.0, "ipatasertib": 1.0}) == "ipatasertib 1 uM + AZD1208 1 uM"  # table order
    assert tr.name(got[-1]) == "MK2206 1 uM + AZD1208 3 uM"
    grid = tr.candidates({**cfg, "pairs": "grid", "drugs": ["MK2206", "AZD1208"], "treatments": []})
    assert len(grid) == 1 + 2 + 5 + 2 * 5
    np.testing.assert_array_equal(tr.doses_matrix([{"AZD1208": 2.0}])[0], [2.0 if d == "AZD1208" else 0.0
                                                                           for d in v.DRUGS])


# ---- the expected information against a closed form -------------------------------------------------------------
def _two_band_information(delta: float, sigma: float) -> float:
    """I(y; M) in bits for M ~ Bernoulli(1/2), a blot of two bands (parental, resistant) with an unknown scale:
    only d = log y_R - log y_P ~ N(0 or delta, 2 sigma^2) is informative (1D quadrature)."""
    s = math.sqrt(2.0) * sigma

    def integrand(d):
        p0, p1 = scipy.stats.norm.pdf(d, 0.0, s), scipy.stats.norm.pdf(d, delta, s)
        mix = 0.5 * (p0 + p1)
        return 0.5 * (p0 * math.log(p0 / mix) + p1 * math.log(p1 / mix)) if mix > 0 else 0.0

    lo, hi = -12 * s, delta + 12 * s
    return scipy.integrate.quad(integrand, lo, hi, limit=200)[0] / math.log(2.0)


@pytest.mark.parametrize("delta", [0.0, 0.15, 0.4, 1.5])
def test_expected_information_matches_the_closed_form_of_a_two_band_blot(delta):
    sigma, n = 0.15, 1500
    label = ["A"] * n + ["B"] * n
    log_h = np.zeros((1, 2 * n, 2))  # bands: parental, resistant; a common offset per draw (its scale) is free
    log_h[0, n:, 1] = delta
    log_h[0, :, :] += np.random.default_rng(0).normal(0.0, 3.0, (2 * n, 1))  # any scale: it is integrated out
    got = design.rank(log_h, np.full(2 * n, sigma), label, jax.random.PRNGKey(1))
    want = _two_band_information(delta, sigma)
    assert got.loc[0, "expected_info_bits"] == pytest.approx(want, abs=0.03)
    assert got.loc[0, "p_true_now"] == pytest.approx(0.5)
    assert -1e-9 <= got.loc[0, "expected_info_bits"] <= 1.0 + 1e-9


def test_a_lone_band_on_a_new_blot_tells_nothing_and_the_likelihood_is_the_observation_model():
    """One band with an unknown scale carries no information, whatever the draws predict; the per-pair
    likelihood of `design` is `observation.marginal_log_likelihood` of one scale group."""
    rng = np.random.default_rng(2)
    log_h = rng.normal(0, 1, (1, 200, 1))
    got = design.rank(log_h, np.full(200, 0.2), ["A"] * 100 + ["B"] * 100, jax.random.PRNGKey(0))
    assert got.loc[0, "expected_info_bits"] == pytest.approx(0.0, abs=1e-12)
    h, y, sigma = rng.normal(0, 1, 6), rng.normal(0, 1, 6), 0.3
    dev = (y - h) - np.mean(y - h)
    mine = -0.5 * np.sum(dev**2) / sigma**2 - 0.5 * 5 * math.log(2 * math.pi * sigma**2) - 0.5 * math.log(6)
    ref = float(observation.marginal_log_likelihood(h, y, np.zeros(6, int), np.full(6, sigma), 1)) + np.sum(y)
    assert mine == pytest.approx(ref, rel=1e-12)


def test_labels_name_every_mechanism_beyond_the_threshold():
    got = design.labels(np.array([[0.1, -2.0, 0.0], [1.5, 0.0, -1.2], [0.0, 0.0, 0.0]]),
                        ["akt_allosteric_binding", "pten_loss", "pten_loss"], 1.0)
    assert got == ["pten_loss", "akt_allosteric_binding+pten_loss", "none"]


# ---- the seeds' biology on planted lines ------------------------------------------------------------------------
def test_allosteric_binding_loss_is_reversed_by_the_atp_competitive_inhibitor(candidates):
    """Savill et al. 2022: an MK-2206-resistant line that lost allosteric binding stays sensitive to ipatasertib.
    Against the parental line under MK-2206 0.3 uM, ipatasertib reverses pPRAS40 where more MK-2206 does not."""
    table = reversal(planted({"IC50_MK2206": 30.0}), candidates, "MK2206", 0.3)
    assert row(table, "ipatasertib 10 uM").prob_reversal > 0.9
    assert row(table, "MK2206 3 uM").prob_reversal < 0.1
    assert row(table, "ipatasertib 3 uM").median_ratio < row(table, "MK2206 3 uM").median_ratio
    assert row(table, "vehicle").prob_reversal == 0.0


def test_pim_compensation_is_reversed_by_adding_the_pim_inhibitor(candidates):
    """An ipatasertib-resistant line by PIM (X x 5): of the co-treatments with ipatasertib, adding AZD1208 brings
    pPRAS40 T246 closest to the parental level under ipatasertib (at worst second, after MK-2206)."""
    table = reversal(planted({"X": 5.0}), candidates, "ipatasertib", 1.0)
    for time in (60.0, 1440.0):
        rows = table[(table.readout == "pPRAS40_T246") & (table.time_min == time)
                     & table.treatment.str.startswith("ipatasertib 1 uM + ")]
        order = rows.sort_values("median_ratio").treatment.tolist()
        assert "ipatasertib 1 uM + AZD1208 1 uM" in order[:2], order[:3]
        combo = row(table, "ipatasertib 1 uM + AZD1208 1 uM", time=time)
        assert combo.median_ratio < 0.85 * row(table, "ipatasertib 1 uM", time=time).median_ratio
        assert combo.median_ratio < row(table, "ipatasertib 10 uM", time=time).median_ratio * 1.05


def test_activating_mtor_mutation_is_suppressed_by_rapalink(candidates):
    """Rodrik-Outmezguine et al. 2016: a line with hyperactive mTOR (alpha_mTOR x 3) escapes AZD8055 at the dose
    that works in the parental line; nM RapaLink-1 still suppresses pS6, and of the single agents RapaLink-1
    suppresses it furthest."""
    table = reversal(planted({"alpha_mTOR": 3.0}), candidates, "AZD8055", 0.1)
    assert row(table, "AZD8055 0.1 uM", "pS6_S240").prob_reversal < 0.1
    assert row(table, "RapaLink1 0.03 uM", "pS6_S240").prob_reversal > 0.9
    singles = table[(table.readout == "pS6_S240") & (table.time_min == 60.0) & ~table.treatment.str.contains("\\+")]
    assert singles.sort_values("median_ratio").treatment.iloc[0].startswith("RapaLink1")


def test_pten_loss_under_alpelisib_needs_an_akt_or_mtor_co_treatment(candidates):
    """A PTEN-loss line (rho_PTEN x 0.2, p110beta share up) escapes alpelisib: escalating alpelisib does not bring
    pS6 back to the parental level, adding an AKT or mTOR kinase inhibitor does."""
    table = reversal(planted({"rho_PTEN": 0.2, "phi_b": 5.0}), candidates, "alpelisib", 1.0)
    for readout in ("pS6_S240", "pPRAS40_T246"):
        escalation = max(row(table, f"alpelisib {x:g} uM", readout).prob_reversal for x in (3.0, 10.0))
        assert escalation < 0.1
    for co in ("MK2206 1 uM", "ipatasertib 1 uM", "AZD8055 0.1 uM"):
        assert row(table, f"alpelisib 1 uM + {co}", "pS6_S240").prob_reversal > 0.9


def test_design_separates_two_mechanisms_that_fit_the_data_alike(candidates):
    """Given only pS6 of both lines under MK-2206 3 uM (60 min), allosteric binding loss (IC50_MK2206 x 30, the
    truth) and PIM compensation (X x k, k fitted to the same ratio) explain it alike. `design` ranks first an
    experiment that tells them apart (ipatasertib), and that experiment, simulated from the truth and added,
    does: the posterior moves from about even to the truth."""
    s6 = v.TARGETS.index("pS6_S240")
    truth = planted({"IC50_MK2206": 30.0}, n=1, sd=0.0, fold_sd=0.0)

    def ratio(vals):
        obs, _ = predict.simulate_draws(vals, candidates, TIMES, "IGF1", 60.0)
        i = [tr.name(t) for t in candidates].index("MK2206 3 uM")
        return obs[:, 1, i, 2, s6] / obs[:, 0, i, 2, s6]

    ks = np.array([4.0, 8.0, 16.0, 32.0])
    rs = ratio(np.concatenate([planted({"X": k}, n=1, sd=0.0, fold_sd=0.0) for k in ks]))
    k = float(np.exp(np.interp(np.log(ratio(truth)[0]), np.log(rs), np.log(ks))))
    half = DRAWS // 2
    draws = np.concatenate([planted({"IC50_MK2206": 30.0}, half, seed=1, sd=0.05, fold_sd=0.3),
                            planted({"X": k}, half, seed=2, sd=0.05, fold_sd=0.3)])
    names = np.array(["akt_allosteric_binding"] * half + ["pim_parallel_kinase"] * half)
    obs, ok = predict.simulate_draws(np.concatenate([truth, draws]), candidates, TIMES, "IGF1", 60.0)
    assert ok.all()
    rng = np.random.default_rng(5)
    sigma, reps = 0.15, 2

    def weights(cond: int, times: list[int], log_w=None):
        """Posterior weights of the draws after a blot of (parental, R) x times x reps under candidate cond."""
        bands = lambda o: np.repeat(np.log(o[:, :, cond][:, :, times, s6]).reshape(len(o), -1), reps, 1)  # noqa
        y = bands(obs[:1])[0] + sigma * rng.standard_normal(2 * len(times) * reps)
        ll = np.array([float(observation.marginal_log_likelihood(h, y, np.zeros(len(y), int), np.full(len(y), sigma), 1))
                       for h in bands(obs[1:])])
        lw = ll + (0.0 if log_w is None else log_w)
        return lw - np.logaddexp.reduce(lw)

    mk = [tr.name(t) for t in candidates].index("MK2206 3 uM")
    log_w = weights(mk, [2])
    p_truth = np.exp(log_w[names == "akt_allosteric_binding"]).sum()
    assert 0.2 < p_truth < 0.8, p_truth  # the existing data fit both alike
    keep = np.random.default_rng(6).choice(len(draws), size=len(draws), p=np.exp(log_w))  # posterior draws
    sim = obs[1:][keep]
    log_h = design.experiment_log_h(sim[..., [s6]], 1, 0, reps)  # [C, 1, D, B]
    scores = design.rank(log_h[:, 0], np.full(len(keep), sigma), list(names[keep]), jax.random.PRNGKey(0))
    scores.insert(0, "treatment", [tr.name(t) for t in candidates])
    best = design.ordered(scores).iloc[0]
    assert "ipatasertib" in best.treatment, design.ordered(scores).head(5)
    assert best.expected_info_bits > 0.8 and best.tells_apart == "akt_allosteric_binding vs pim_parallel_kinase"
    after = weights([tr.name(t) for t in candidates].index(best.treatment), list(range(len(TIMES))), log_w)
    assert np.exp(after[names == "akt_allosteric_binding"]).sum() > 0.99


# ---- the stages' inputs ------------------------------------------------------------------------------------------
def test_config_names_unknown_drugs_targets_and_stimuli(tmp_path):
    raw = yaml.safe_load(open("config/config.yaml"))
    raw["dataset"] = "data/example"
    raw["predict"] = {"resists": {"MK2206R": "MK2207"}, "readouts": ["pS6"], "treatments": [{"AZD1209": 1.0}],
                      "stimulus": "PDGF"}
    raw["design"] = {"targets": ["pERK", "pAKT"]}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(config.InputError) as e:
        config.load(path)
    text = "\n".join(str(p) for p in e.value.problems)
    for key in ("predict.resists.MK2206R", "predict.readouts", "predict.treatments[0]", "predict.stimulus",
                "design.targets"):
        assert key in text, text
    assert "MK2206" in text and "drugs.csv" in text


def test_predict_names_a_resistant_line_the_data_lack_and_writes_nothing(tmp_path, capsys):
    from pipeline.blots import dataset, ingest

    raw = yaml.safe_load(open("config/config.yaml"))
    raw["predict"]["resists"] = {"MK2206R": "MK2206", "AZDR": "AZD8055"}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    ingest.write(ingest.to_xarray(dataset.load("data/example")), tmp_path / "data.nc")
    (tmp_path / "posterior.nc").write_bytes(b"")
    code = cli.main(["predict", str(path), "--data", str(tmp_path / "data.nc"), "--posterior",
                     str(tmp_path / "posterior.nc"), "--out", str(tmp_path / "p.nc"), "--reversal", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert "predict.resists.AZDR" in err and "ipatasertibR" in err and "Traceback" not in err
    assert not (tmp_path / "p.nc").exists() and not (tmp_path / "r.csv").exists()


def test_draw_values_rebuild_every_lines_parameters_from_the_posterior_group():
    """predict reads a draw's parameters back from posterior.nc (estimated values and `shift`): they must be the
    vectors the fit simulated (`Model.line_values`), shifts of fractions included."""
    from pipeline import fit
    from pipeline.blots import dataset, ingest

    cfg = config.load("config/config.yaml")
    m = fit.model(cfg, ingest.to_xarray(dataset.load("data/example")))
    u = np.random.default_rng(0).normal(0, 1, (3, 4, m.dim))
    named = jax.vmap(jax.vmap(m.named))(u)
    post = xr.Dataset({name: (("chain", "draw"), np.asarray(named["estimates"])[..., i])
                       for i, name in enumerate(m.estimated)})
    post["shift"] = (("chain", "draw", "cell_line", "shift_parameter"), np.asarray(named["shift"]))
    got = predict.draw_values(m, post, 100)
    want = np.asarray(jax.vmap(m.line_values)(u.reshape(12, m.dim)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert len(predict.draw_values(m, post, 5)) == 5
