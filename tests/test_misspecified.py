"""The misspecification benchmark in small (benchmarks/misspecified.py is the full one): data from an
independent generator with departures the fitted model lacks (tests/misspecified_model.py: Hill slopes,
drug onset, a delayed S6K -| IRS1 arm, kinetic parameters off the table in both lines, loading errors, a
per-lysate effect, background), fitted by MAP with a reduced but symmetric model (every shiftable parameter
is estimated in the reference line too). The two datasets of the benchmark become two lines of one
dataset beside the parental line (one fit, one compile): a null line (identical parameters) must show no
shift; a line with akt_allosteric_binding planted (IC50_MK2206 x 30) must show it alone. Also: the
generator is the spec model when its departures are off, and a departure has its planted effect."""

import numpy as np
import pytest
import reference_model as ref

import misspecified_model as mm
from pipeline import config, fit
from pipeline.blots import dataset, design, ingest
from pipeline.model import parameters, variant

TIMES = [0, 5, 15, 60, 240, 1440]
MECHANISMS = ["akt_allosteric_binding", "pim_parallel_kinase", "mapk_compensation"]
# a few parameters this design informs (AKT dephosphorylation, the ipatasertib IC50, S6 dephosphorylation);
# symmetric lines add every parameter of the shiftable mechanisms (the fixture checks that they do)
ESTIMATE = ["kd_T", "IC50_ipatasertib", "k_6d"]
SHIFTABLE = [p for m in MECHANISMS for p in parameters.mechanism_parameters(m)]
# measured (MAP 4 starts x 40, 2026-12-02): null-line max |log2 FC| 0.38 (u_R0; X 0.16) in this dataset, 0.22
# (u_R0) with another seed (two separate datasets). Noise alone moves u_R0 about that far: basal pERK, its
# main witness, rises only 1.51-fold for a 2-fold u_R0 (ERK -| SOS; reference_model steady state at the
# table values), and each line has 8 basal pERK bands at sigma 0.15 plus the lysate effect, so the u_R0
# difference has a standard error of ~0.2 log2. 0.3 was too tight for this design; 0.5 is still half the
# benchmark's call threshold (1).
NULL_MAX_LOG2 = 0.5
PLANTED = "akt_allosteric_binding"


def test_generator_without_departures_is_the_spec_model():
    p = mm.line_parameters(mm.Departures())
    assert p == ref.NOMINAL
    for doses in ({}, {"MK2206": 1.0, "ipatasertib": 0.1},
                  {"everolimus": 0.01, "AZD8055": 0.1, "trametinib": 0.01, "AZD1208": 1.0, "alpelisib": 1.0}):
        got = mm.simulate(p, doses, 60, TIMES, rtol=ref.RTOL, atol=ref.ATOL)
        want = ref.simulate(p, "IGF1", doses, 60, TIMES)
        for target in ("pAKT_S473", "pAKT_T308", "pPRAS40_T246", "pS6_S240", "pERK", "IRS1"):
            np.testing.assert_allclose(got[target], want[target], rtol=1e-6, atol=1e-10,
                                       err_msg=f"{target} {doses}")


def test_hill_slopes_go_through_the_spec_occupancy():
    dep = mm.Departures(hill={"MK2206": 1.8})
    p = mm.line_parameters(dep)
    assert p["h_MK2206"] == 1.8
    got = mm.simulate(p, {"MK2206": 0.1}, 60, TIMES, dep)
    want = ref.simulate(p, "IGF1", {"MK2206": 0.1}, 60, TIMES)
    np.testing.assert_allclose(got["pAKT_T308"], want["pAKT_T308"], rtol=1e-5)
    # 0.1 uM is below the IC50 (0.2): a steeper slope inhibits less there
    nominal = ref.simulate(ref.NOMINAL, "IGF1", {"MK2206": 0.1}, 60, TIMES)
    assert got["pAKT_T308"][2] > nominal["pAKT_T308"][2]


def test_drug_onset_makes_early_inhibition_smaller_than_qss():
    """MK-2206 co-added with IGF-1 (no pretreatment): with onset (k_on 0.05/min) pAKT T308 is inhibited
    less at 5-15 min than with the QSS occupancy, and both agree after 24 h."""
    p = dict(ref.NOMINAL)
    qss = mm.simulate(p, {"MK2206": 1.0}, 0, TIMES)
    onset = mm.simulate(p, {"MK2206": 1.0}, 0, TIMES, mm.Departures(k_on={"MK2206": 0.05}))
    vehicle = mm.simulate(p, {}, 0, TIMES)
    for i in (1, 2):  # 5 and 15 min
        assert vehicle["pAKT_T308"][i] > onset["pAKT_T308"][i] > 1.5 * qss["pAKT_T308"][i]
    np.testing.assert_allclose(onset["pAKT_T308"][-1], qss["pAKT_T308"][-1], rtol=1e-3)


def test_delayed_feedback_arm_delays_irs1_loss():
    p = dict(ref.NOMINAL)
    now = mm.simulate(p, {}, 60, TIMES)
    late = mm.simulate(p, {}, 60, TIMES, mm.Departures(irs_delay_min=45.0))
    assert late["IRS1"][3] > now["IRS1"][3]  # 60 min after IGF-1: less S6K-driven IRS1 loss yet
    np.testing.assert_allclose(late["IRS1"][0], now["IRS1"][0], rtol=1e-6)  # same steady state


@pytest.fixture(scope="module")
def best_fit(tmp_path_factory):
    """One dataset, one fit (one compile): the parental line, a null line (identical parameters, its own
    noise) and a line with akt_allosteric_binding planted, all on the same blots."""
    root = tmp_path_factory.mktemp("misspecified")
    folder = root / "data"
    truth = mm.make_dataset(folder, None, 12, mm.small_design(), name="ci_misspecified",
                            lines={"null": None, "akt": PLANTED})
    assert truth["departures"]["irs_delay_mean_min"] > 0
    assert truth["lines"]["null"]["planted"] == {}
    _, problems = dataset.check(folder)
    assert not [p for p in problems if p.severity == "error"], problems
    cfg_path = root / "config.yaml"
    cfg_path.write_text(
        f"analysis: ci_misspecified\ndataset: {folder}\nseed: 0\n"
        f"model: {{estimate: {ESTIMATE}, shift_mechanisms: {MECHANISMS}}}\n"
        "solver: {rtol: 1.0e-5}\nmap: {starts: 4, steps: 40}\n")
    cfg = config.load(cfg_path)
    assert variant.estimated(cfg) == tuple(ESTIMATE + SHIFTABLE)
    ds = ingest.to_xarray(dataset.load(folder))
    doses = design.from_dataset(ds).conditions.doses_uM
    assert variant.estimated(cfg, doses) == tuple(ESTIMATE + SHIFTABLE + ["h_MK2206"])  # MK-2206 at 0.1 and 1
    return fit.run_map(cfg, ds, log=lambda s: None)["fits"][0]


def scores(fc: dict) -> dict:
    return {m: max(abs(fc[p]) for p in parameters.mechanism_parameters(m)) for m in MECHANISMS}


def test_null_shows_no_shift(best_fit):
    fc = best_fit["log2_fc"]["null"]
    print("null log2 FC:", {k: round(v, 3) for k, v in fc.items()})
    assert max(abs(x) for x in fc.values()) < NULL_MAX_LOG2, fc


def test_planted_mechanism_stands_alone(best_fit):
    fc = best_fit["log2_fc"]["akt"]
    print("akt log2 FC:", {k: round(v, 3) for k, v in fc.items()})
    s = scores(fc)
    assert max(s, key=s.get) == PLANTED
    assert abs(fc["IC50_MK2206"] - np.log2(30.0)) < 1.0
    assert max(v for m, v in s.items() if m != PLANTED) < 1.0
