"""Qualitative behaviours of the network at the nominal parameters (model-spec.md section 10, items 1-8).

Each test asserts a direction and a magnitude bound; bracketed numbers in messages and comments are the
values at the nominal parameters (the scipy reference, `tests/reference_model.py`, gives the same to the
digits shown), and the bounds leave slack around them. Run with `-rP` (or `-s`) to see every measured number.

Protocols (spec section 6):
- *IGF1 dose designs*: starved steady state (L = L_b), drug pretreatment for 60 min, IGF1 at t = 0;
  a drug's effect is the ratio to the same line's untreated IGF1 course at the same time.
- *Drug-only courses in full serum* (items 1, 2, 5, 6): the pre-equilibrated state is the serum steady state
  (the override `L_b -> L_b + s_FBS`, stimulus "none", no pretreatment), the drug starts at t = 0, and an
  effect is the ratio to t = 0.

Compile time dominates (about 30-70 s per jitted shape on 2 cores), so every simulation here goes through
one jitted function at one padded shape, [2 * N_DRAWS parameter rows, 4 * N_DRAWS conditions, len(TIMES)]:
the nominal experiments of items 1-7 in one call and the prior draws of item 8 in another (padding the nominal
call costs less than a second compile). Only the steady-state check of item 8 compiles a second function.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from pipeline.model import network, parameters, simulate, solver
from pipeline.vocabulary import TARGETS

TIMES = np.array([0.0, 5.0, 7.0, 15.0, 30.0, 60.0, 120.0, 240.0, 720.0, 1440.0])  # min since the stimulus / drug
N_DRAWS = 100  # prior draws of item 8; fixes the one padded shape of every simulation
SHAPE = (2 * N_DRAWS, 4 * N_DRAWS)  # (parameter rows, conditions)

NOMINAL = parameters.nominal()
SERUM = {"L_b": NOMINAL["L_b"] + NOMINAL["s_FBS"]}  # cells growing in full serum

# parameter rows: name -> overrides of the nominal values
LINES = {
    "parental": {},
    "parental_loops_off": network.loop_overrides(network.LOOPS),
    "serum": SERUM,
    "serum_gF_x3": {**SERUM, "g_F": 3.0 * NOMINAL["g_F"]},
    "serum_foxo_rtk_off": {**SERUM, **network.loop_overrides(["foxo_rtk"])},
    "serum_erk_rtk_off": {**SERUM, **network.loop_overrides(["erk_rtk"])},
}
# resistant lines of spec section 4 (the prototype check's shifts): name -> (mechanism, overrides)
SIGNATURE_LINES = {
    "MK_res": ("akt_allosteric_binding", {"IC50_MK2206": 30.0 * NOMINAL["IC50_MK2206"]}),
    "PIM_high": ("pim_parallel_kinase", {"X": 5.0 * NOMINAL["X"]}),
    "PTEN_loss": ("pten_loss", {"rho_PTEN": 0.2, "phi_b": 0.5}),
    "MTOR_mutant": ("mtor_activating_mutation", {"alpha_mTOR": 3.0}),
}
LINES.update({name: overrides for name, (_, overrides) in SIGNATURE_LINES.items()})

AKT_DOSES = (0.1, 1.0, 10.0)  # uM, ipatasertib and MK-2206 (items 3, 4, 7)
TORKI_DOSES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # uM AZD8055 (item 7)
PIMI_UM = 3.0  # AZD1208, ~10x its IC50


def serum_course(line="serum", **doses):
    """Key of a drug-only course in full serum: drug at t = 0 on the serum steady state."""
    return (line, "none", tuple(sorted(doses.items())), 0.0)


def igf1_course(line="parental", **doses):
    """Key of an IGF1 course after 60 min drug pretreatment of starved cells."""
    return (line, "IGF1", tuple(sorted(doses.items())), 60.0)


def _nominal_design():
    keys = [serum_course(), serum_course(everolimus=0.1), serum_course(AZD8055=1.0),
            serum_course(trametinib=0.1), serum_course("serum_erk_rtk_off", trametinib=0.1)]
    for line in ("serum", "serum_gF_x3", "serum_foxo_rtk_off"):
        keys += [serum_course(line, MK2206=1.0), serum_course(line, alpelisib=1.0)]
    for line in ("parental", "parental_loops_off", "MK_res"):
        keys += [igf1_course(line)] + [igf1_course(line, ipatasertib=d) for d in AKT_DOSES]
    for line in ("parental", "MK_res"):
        keys += [igf1_course(line, MK2206=d) for d in AKT_DOSES]
    for line in ("parental", "PIM_high"):
        keys += [igf1_course(line), igf1_course(line, ipatasertib=10.0),
                 igf1_course(line, ipatasertib=10.0, AZD1208=PIMI_UM)]
    keys += [igf1_course("PTEN_loss"), igf1_course("PTEN_loss", alpelisib=1.0), igf1_course("PTEN_loss", MK2206=1.0),
             igf1_course("parental", alpelisib=1.0)]
    for line in ("parental", "MTOR_mutant"):
        keys += [igf1_course(line)] + [igf1_course(line, AZD8055=d) for d in TORKI_DOSES]
    return list(dict.fromkeys(keys))  # unique, in order


_SIMULATE = jax.jit(lambda values, conds, times: simulate.simulate(values, conds, times))


def _simulate_padded(values, line, stimulus, doses, pretreatment):
    """One call of the jitted simulator at the shared shape SHAPE (rows and conditions padded with copies)."""
    n_rows, n_conds = len(values), len(line)
    assert n_rows <= SHAPE[0] and n_conds <= SHAPE[1], (n_rows, n_conds, SHAPE)
    values = np.concatenate([values, np.repeat(values[:1], SHAPE[0] - n_rows, axis=0)])
    pad = SHAPE[1] - n_conds
    conds = simulate.conditions(line=list(line) + [0] * pad, stimulus=list(stimulus) + [stimulus[0]] * pad,
                                doses_uM=list(doses) + [doses[0]] * pad,
                                pretreatment_min=list(pretreatment) + [pretreatment[0]] * pad)
    sim = _SIMULATE(jnp.asarray(values), conds, np.tile(TIMES, (SHAPE[1], 1)))
    return (np.asarray(sim.states)[:n_conds], np.asarray(sim.observables)[:n_conds], np.asarray(sim.ok)[:n_conds])


class Runs:
    """Nominal simulations looked up by condition key (see `serum_course`, `igf1_course`)."""

    def __init__(self, keys, states, observables, ok):
        self.row = {key: i for i, key in enumerate(keys)}
        self.states, self.observables, self.ok = states, observables, ok

    def obs(self, key, target):
        return self.observables[self.row[key], :, TARGETS.index(target)]

    def state(self, key, name):
        return self.states[self.row[key], :, network.IDX[name]]

    def fold_from_start(self, key, target):
        """Drug-only courses: the time course relative to t = 0."""
        x = self.obs(key, target)
        return x / x[0]

    def fold_vs_untreated(self, key, target):
        """IGF1 designs: the time course relative to the same line's untreated IGF1 course."""
        return self.obs(key, target) / self.obs(igf1_course(key[0]), target)


@pytest.fixture(scope="module")
def runs():
    keys = _nominal_design()
    names = list(LINES)
    values = np.stack([np.asarray(simulate.nominal_values(LINES[name])) for name in names])
    states, obs, ok = _simulate_padded(values, [names.index(k[0]) for k in keys], [k[1] for k in keys],
                                       [dict(k[2]) for k in keys], [k[3] for k in keys])
    failed = [k for k, good in zip(keys, ok) if not good]
    assert not failed, f"nominal simulations failed: {failed}"
    assert np.all(np.isfinite(obs)) and np.all(obs > 0)
    return Runs(keys, states, obs, ok)


def at(t_min):
    return int(np.flatnonzero(TIMES == t_min)[0])


def report(name, **numbers):
    """Print the measured numbers (shown with `pytest -s` or `-rP`)."""
    def fmt(v):
        return np.array2string(np.asarray(v, float), precision=4, separator=", ") if np.ndim(v) else f"{float(v):.4g}"
    print(f"[{name}] " + ", ".join(f"{k}={fmt(v)}" for k, v in numbers.items()))


def test_serum_start_is_the_serum_steady_state(runs):
    """Protocol check for the drug-only courses: without drug the serum state does not move in 24 h."""
    for target in TARGETS:
        fold = runs.fold_from_start(serum_course(), target)
        assert np.max(np.abs(fold - 1.0)) < 1e-4, (target, fold)
    r = runs.state(serum_course(), "R")
    assert np.max(np.abs(r / r[0] - 1.0)) < 1e-4, r


# 1. Everolimus in serum: pS6 down >90 % by 60 min, p4EBP1 only partly, pAKT and IRS1 up progressively.
def test_everolimus_relieves_s6k_feedback_pS6_off_4ebp1_partial_akt_irs1_up(runs):
    key = serum_course(everolimus=0.1)
    s6 = runs.fold_from_start(key, "pS6_S240")
    e4 = runs.fold_from_start(key, "p4EBP1_T37")
    s473 = runs.fold_from_start(key, "pAKT_S473")
    t308 = runs.fold_from_start(key, "pAKT_T308")
    irs1 = runs.fold_from_start(key, "IRS1")
    report("everolimus", pS6_60=s6[at(60)], pS6_24h=s6[-1], p4EBP1_60=e4[at(60)], p4EBP1_min=e4.min(),
           pS473_60=s473[at(60)], pS473_24h=s473[-1], pT308_24h=t308[-1], IRS1_24h=irs1[-1])
    assert s6[at(60)] < 0.1 and s6[-1] < 0.1, f"pS6 S240/244 not down >90 % [0.083 at 60 min]: {s6}"
    assert 0.5 < e4[at(60)] < 0.95 and e4.min() > 0.5, f"p4EBP1 should fall only partly [0.85 at 60 min]: {e4}"
    for name, fold in (("pS473", s473), ("pT308", t308)):
        assert np.all(np.diff(fold) > -1e-3), f"{name} should rise progressively: {fold}"
    assert s473[-1] > s473[at(60)] + 0.05, f"pS473 should keep rising after 1 h: {s473}"
    assert 1.4 < s473[-1] < 2.1, f"pS473 at 24 h [1.69x]: {s473[-1]:.3f}"
    assert 1.05 < t308[-1] < 1.4, f"pT308 at 24 h [1.21x]: {t308[-1]:.3f}"
    assert 1.4 < irs1[-1] < 2.1, f"IRS1 at 24 h [1.70x]: {irs1[-1]:.3f}"


# 2. TOR kinase inhibitor: pS473 down >85 % durably, pT308 dips early and recovers, pS6 and p4EBP1 down fully.
def test_torki_blocks_s473_durably_t308_dips_and_recovers_s6_4ebp1_off(runs):
    key = serum_course(AZD8055=1.0)
    s473 = runs.fold_from_start(key, "pAKT_S473")
    t308 = runs.fold_from_start(key, "pAKT_T308")
    s6 = runs.fold_from_start(key, "pS6_S240")
    e4 = runs.fold_from_start(key, "p4EBP1_T37")
    irs1 = runs.fold_from_start(key, "IRS1")
    rtk = runs.state(key, "R") / runs.state(key, "R")[0]
    early = TIMES <= 60
    i_dip = int(np.argmin(t308[early]))
    report("AZD8055", pS473_max_after_15=s473[TIMES >= 15].max(), pS473_24h=s473[-1], pT308_min=t308[i_dip],
           t_min=TIMES[i_dip], pT308_24h=t308[-1], pS6_60=s6[at(60)], p4EBP1_60=e4[at(60)],
           IRS1_24h=irs1[-1], RTK_24h=rtk[-1])
    assert np.all(s473[TIMES >= 15] < 0.15), f"pS473 should stay down >85 % from 15 min to 24 h [0.095]: {s473}"
    assert 0.78 < t308[i_dip] < 0.95 and TIMES[i_dip] <= 30, \
        f"pT308 should dip early [min 0.857 at ~7 min]: {t308}"
    assert t308[-1] > t308[i_dip] + 0.05 and 0.9 < t308[-1] < 1.05, f"pT308 should recover by 24 h [0.96]: {t308}"
    assert s6[at(60)] < 0.15 and s6[-1] < 0.1, f"pS6 S240/244 should be off [0.10 at 60 min]: {s6}"
    assert e4[at(60)] < 0.25 and e4[-1] < 0.25, f"p4EBP1 should be off [0.16 at 60 min]: {e4}"
    assert irs1[-1] > 1.3 and rtk[-1] > 1.1, f"IRS1/RTK should rise with the recovery: {irs1[-1]:.3f}, {rtk[-1]:.3f}"


# 3. Ipatasertib: pT308/pS473 up dose-dependently while pPRAS40 and pS6 fall, also with every feedback loop off.
@pytest.mark.parametrize("line", ["parental", "parental_loops_off"])
def test_ipatasertib_hyperphosphorylates_akt_while_blocking_substrates(runs, line):
    for t in (15.0, 60.0):
        fold = {target: np.array([1.0] + [runs.fold_vs_untreated(igf1_course(line, ipatasertib=d), target)[at(t)]
                                          for d in AKT_DOSES])
                for target in ("pAKT_T308", "pAKT_S473", "pPRAS40_T246", "pS6_S240")}
        report(f"ipatasertib {line} {t:g} min, doses 0/{'/'.join(map(str, AKT_DOSES))}", **fold)
        for target in ("pAKT_T308", "pAKT_S473"):
            assert np.all(np.diff(fold[target]) > 0), f"{target} should rise with the ipatasertib dose: {fold[target]}"
        assert np.all(np.diff(fold["pPRAS40_T246"]) < 0), f"pPRAS40 should fall with the dose: {fold['pPRAS40_T246']}"
        assert np.all(np.diff(fold["pS6_S240"]) < 0.02) and fold["pS6_S240"][3] < fold["pS6_S240"][2] < 0.9, \
            f"pS6 should fall with the dose: {fold['pS6_S240']}"
        # [15 min, nominal / loops off: pS473 2.07/1.60, pT308 1.40/1.30, pPRAS40 0.26/0.25, pS6 0.43/0.37]
        assert 1.3 < fold["pAKT_S473"][3] < 2.6, f"pS473 fold at 10 uM: {fold['pAKT_S473']}"
        assert 1.15 < fold["pAKT_T308"][3] < 1.7, f"pT308 fold at 10 uM: {fold['pAKT_T308']}"
        assert fold["pPRAS40_T246"][2] < 0.75 and fold["pPRAS40_T246"][3] < 0.4, f"pPRAS40: {fold['pPRAS40_T246']}"
        assert fold["pS6_S240"][3] < 0.6, f"pS6 fold at 10 uM: {fold['pS6_S240']}"


# 4. MK-2206: pT308, pS473, pPRAS40 and pS6 all fall dose-dependently.
def test_mk2206_lowers_akt_phosphorylation_and_substrates_dose_dependently(runs):
    for t in (15.0, 60.0):
        fold = {target: np.array([1.0] + [runs.fold_vs_untreated(igf1_course(MK2206=d), target)[at(t)]
                                          for d in AKT_DOSES])
                for target in ("pAKT_T308", "pAKT_S473", "pPRAS40_T246", "pS6_S240")}
        report(f"MK2206 {t:g} min, doses 0/{'/'.join(map(str, AKT_DOSES))}", **fold)
        for target, f in fold.items():
            assert np.all(np.diff(f) < 0), f"{target} should fall with the MK-2206 dose: {f}"
        # [15 min: pT308 0.77/0.22/0.025, pS473 0.74/0.25/0.031, pPRAS40 0.75/0.24/0.19, pS6 0.79/0.38/0.35]
        assert fold["pAKT_T308"][2] < 0.35 and fold["pAKT_T308"][3] < 0.05, f"pT308: {fold['pAKT_T308']}"
        assert fold["pAKT_S473"][2] < 0.35 and fold["pAKT_S473"][3] < 0.06, f"pS473: {fold['pAKT_S473']}"
        assert fold["pPRAS40_T246"][3] < 0.3, f"pPRAS40: {fold['pPRAS40_T246']}"
        assert fold["pS6_S240"][3] < 0.5, f"pS6: {fold['pS6_S240']}"


# 5. AKT/PI3K inhibition for 24 h in serum: RTK and pERK up, both growing with the FOXO gain g_F.
@pytest.mark.parametrize("drug, rtk_bounds, erk_bounds", [
    ("MK2206", (1.8, 2.8), (1.1, 1.4)),  # [RTK 2.26x, pERK 1.24x]
    ("alpelisib", (1.1, 1.5), (1.03, 1.15)),  # [RTK 1.27x, pERK 1.07x]
])
def test_akt_pi3k_inhibition_raises_rtk_and_perk_via_foxo(runs, drug, rtk_bounds, erk_bounds):
    rtk, erk = {}, {}
    for line in ("serum_foxo_rtk_off", "serum", "serum_gF_x3"):  # g_F = 0, nominal, 3x
        key = serum_course(line, **{drug: 1.0})
        rtk[line] = runs.state(key, "R")[-1] / runs.state(key, "R")[0]
        erk[line] = runs.fold_from_start(key, "pERK")[-1]
    report(f"{drug} 24 h, g_F 0/nominal/x3", RTK=list(rtk.values()), pERK=list(erk.values()))
    assert rtk_bounds[0] < rtk["serum"] < rtk_bounds[1], f"RTK fold at 24 h: {rtk}"
    assert erk_bounds[0] < erk["serum"] < erk_bounds[1], f"pERK fold at 24 h: {erk}"
    for name, fold in (("RTK", rtk), ("pERK", erk)):
        f0, f1, f3 = fold["serum_foxo_rtk_off"], fold["serum"], fold["serum_gF_x3"]
        assert f0 < f1 < f3, f"{name} rise should grow with g_F (0, nominal, 3x): {fold}"
        assert abs(f0 - 1.0) < 0.01, f"{name} rise should vanish without the FOXO loop: {fold}"


# 6. MEK inhibition raises pAKT only through finite K_ER (ERK -| RTK/adaptor coupling).
def test_mek_inhibition_raises_pakt_only_through_erk_rtk_feedback(runs):
    rise = {}
    for line in ("serum", "serum_erk_rtk_off"):
        key = serum_course(line, trametinib=0.1)
        erk = runs.fold_from_start(key, "pERK")
        assert erk[at(60)] < 0.1, f"trametinib should block pERK in {line}: {erk}"
        rise[line] = {t: runs.fold_from_start(key, t).max() - 1.0 for t in ("pAKT_T308", "pAKT_S473")}
    report("trametinib max rise", **{f"{line}_{t}": v for line, r in rise.items() for t, v in r.items()})
    assert 0.04 < rise["serum"]["pAKT_T308"] < 0.15, f"pT308 rise with finite K_ER [+8 %]: {rise}"
    assert 0.05 < rise["serum"]["pAKT_S473"] < 0.3, f"pS473 rise with finite K_ER [+18 %]: {rise}"
    for target, r in rise["serum_erk_rtk_off"].items():
        assert abs(r) < 0.005, f"{target} rise should vanish with K_ER = inf: {rise}"


def _ic50(doses, fold):
    """Dose (log-interpolated) where a decreasing fold crosses 0.5."""
    i = int(np.flatnonzero(fold < 0.5)[0])
    x0, x1, y0, y1 = np.log10(doses[i - 1]), np.log10(doses[i]), fold[i - 1], fold[i]
    return 10 ** (x0 + (y0 - 0.5) / (y0 - y1) * (x1 - x0))


# 7. Section 4 signatures of four resistance mechanisms, each a per-line parameter shift.
def test_resistance_signatures(runs):
    for line, (mechanism, overrides) in SIGNATURE_LINES.items():
        assert set(overrides) <= set(parameters.mechanism_parameters(mechanism)), (line, mechanism)
    t = at(15)

    def fold(line, target, **doses):
        return runs.fold_vs_untreated(igf1_course(line, **doses), target)[t]

    # MK-res (IC50_MK2206 x30): MK-2206 curves right-shifted, ipatasertib unchanged -> rescued by ipatasertib
    for target in ("pPRAS40_T246", "pS6_S240"):
        ipa = {ln: fold(ln, target, ipatasertib=10.0) for ln in ("parental", "MK_res")}
        mk = {ln: fold(ln, target, MK2206=1.0) for ln in ("parental", "MK_res")}
        report(f"MK_res {target}", ipa10=list(ipa.values()), MK1=list(mk.values()))
        assert ipa["MK_res"] < 0.6 and abs(ipa["MK_res"] - ipa["parental"]) < 0.02, \
            f"ipatasertib should suppress {target} in MK-res as in parental [0.26/0.43]: {ipa}"
        assert mk["parental"] < 0.5 and mk["MK_res"] > 0.8, \
            f"MK-2206 1 uM should suppress {target} in parental [0.24/0.38] but not in MK-res [0.91/0.92]: {mk}"
    for target in ("pAKT_T308", "pPRAS40_T246"):
        par = np.array([fold("parental", target, MK2206=d) for d in AKT_DOSES])
        res = np.array([fold("MK_res", target, MK2206=d) for d in AKT_DOSES])
        assert np.all(res > par + 0.05), f"MK-2206 {target} curve should be right-shifted in MK-res: {par} {res}"

    # PIM-high (X x5): saturating ipatasertib leaves pPRAS40/pS6/p4EBP1 up, pAKT unchanged; PIM inhibitor restores
    for target in ("pPRAS40_T246", "pS6_S240", "p4EBP1_T37"):
        ipa = {ln: fold(ln, target, ipatasertib=10.0) for ln in ("parental", "PIM_high")}
        combo = {ln: fold(ln, target, ipatasertib=10.0, AZD1208=PIMI_UM) for ln in ("parental", "PIM_high")}
        extra = {ln: combo[ln] / ipa[ln] for ln in ipa}
        report(f"PIM_high {target}", ipa10=list(ipa.values()), ipa10_PIMi=list(combo.values()),
               PIMi_extra=list(extra.values()))
        assert ipa["PIM_high"] > ipa["parental"] + 0.1, f"ipatasertib should leave {target} up in PIM-high: {ipa}"
        assert combo["PIM_high"] < 0.4, f"PIMi + ipatasertib should suppress {target} in PIM-high: {combo}"
        assert extra["PIM_high"] < 0.75 and extra["PIM_high"] < extra["parental"] - 0.15, \
            f"the PIM inhibitor should add more suppression of {target} in PIM-high than in parental: {extra}"
    s473 = {ln: fold(ln, "pAKT_S473", ipatasertib=10.0) for ln in ("parental", "PIM_high")}
    assert abs(s473["PIM_high"] / s473["parental"] - 1) < 0.05, f"pAKT hyperphosphorylation unchanged: {s473}"

    # PTEN loss (rho_PTEN 0.2, phi_b 0.5): starved pAKT up, alpelisib-refractory, AKT inhibitor still works
    for target in ("pAKT_S473", "pAKT_T308"):
        starved = {ln: runs.obs(igf1_course(ln), target)[0] for ln in ("parental", "PTEN_loss")}
        alp = {ln: runs.fold_vs_untreated(igf1_course(ln, alpelisib=1.0), target)[at(60)]
               for ln in ("parental", "PTEN_loss")}
        mk = {ln: fold(ln, target, MK2206=1.0) for ln in ("parental", "PTEN_loss")}
        report(f"PTEN_loss {target}", starved=list(starved.values()), alpelisib_60=list(alp.values()),
               MK1=list(mk.values()))
        assert starved["PTEN_loss"] > 1.5 * starved["parental"], f"starved {target} should be higher: {starved}"
        assert alp["parental"] < 0.85, f"alpelisib should lower {target} in parental [0.58/0.76]: {alp}"
        assert 1 - alp["PTEN_loss"] < 0.5 * (1 - alp["parental"]), \
            f"alpelisib should lose most of its effect on {target} with PTEN loss [0.96/0.98]: {alp}"
        assert mk["PTEN_loss"] < 0.35, f"MK-2206 should still lower {target} with PTEN loss: {mk}"

    # MTOR mutant (alpha_mTOR 3): higher basal pS6/p4EBP1, AZD8055 dose response right-shifted
    for target in ("pS6_S240", "p4EBP1_T37"):
        basal = {ln: runs.obs(igf1_course(ln), target)[0] for ln in ("parental", "MTOR_mutant")}
        report(f"MTOR_mutant basal {target}", starved=list(basal.values()))
        assert basal["MTOR_mutant"] > 1.4 * basal["parental"], f"basal {target} should be higher [1.8x]: {basal}"
    curves = {ln: np.array([runs.fold_vs_untreated(igf1_course(ln, AZD8055=d), "pS6_S240")[at(60)]
                            for d in TORKI_DOSES]) for ln in ("parental", "MTOR_mutant")}
    ic50 = {ln: _ic50(TORKI_DOSES, c) for ln, c in curves.items()}
    report("MTOR_mutant AZD8055 pS6 60 min", **curves, IC50_uM=list(ic50.values()))
    assert np.all(curves["MTOR_mutant"] >= curves["parental"]), f"TORKi curve should be right-shifted: {curves}"
    assert 1.7 < ic50["MTOR_mutant"] / ic50["parental"] < 5, f"TORKi pS6 IC50 shift [~2.5x]: {ic50}"
    assert curves["MTOR_mutant"][-1] < 0.2, f"saturating AZD8055 should still suppress pS6: {curves}"


# 8. Invariants over prior draws: fractions in [0, 1], AT + AS + ATS <= 1, no NaN, failures flagged not raised;
#    one steady state from two different starts.
def prior_draws(n, seed=20240611):
    """n parameter dicts: estimated log-normal parameters ~ 10^N(log10 nominal, sigma_log10), estimated fractions
    ~ Beta(a, b); the rest nominal."""
    rng = np.random.default_rng(seed)
    table = parameters.table()
    draws = []
    for _ in range(n):
        v = dict(NOMINAL)
        for name, row in table.iterrows():
            if not row["estimate"]:
                continue
            if row["prior"] == "lognormal":
                v[name] = 10.0 ** rng.normal(np.log10(row["value"]), row["sigma_log10"])
            elif row["prior"] == "beta":
                v[name] = rng.beta(row["beta_a"], row["beta_b"])
        draws.append(v)
    return draws


PRIOR_DESIGN = (  # (stimulus, doses, pretreatment, in serum)
    ("IGF1", {}, 0.0, False),
    ("IGF1", {"MK2206": 1.0}, 60.0, False),
    ("IGF1", {"ipatasertib": 1.0}, 60.0, False),
    ("none", {"everolimus": 0.1}, 0.0, True),
)


@pytest.fixture(scope="module")
def prior_runs():
    draws = prior_draws(N_DRAWS)
    rows = []  # per draw: starved row 2d, serum row 2d + 1
    for v in draws:
        rows += [parameters.as_array(v), parameters.as_array({**v, "L_b": v["L_b"] + v["s_FBS"]})]
    design = [(2 * d + serum, stim, doses, pre) for d in range(N_DRAWS) for stim, doses, pre, serum in PRIOR_DESIGN]
    states, obs, ok = _simulate_padded(np.stack(rows), *zip(*design))
    shape = (N_DRAWS, len(PRIOR_DESIGN))
    return draws, states.reshape(shape + states.shape[1:]), obs.reshape(shape + obs.shape[1:]), ok.reshape(shape)


def test_invariants_over_prior_draws(prior_runs):
    _, states, obs, ok = prior_runs
    good = ok.all(axis=1)
    print(f"[prior draws] {int((~good).sum())} of {N_DRAWS} draws flagged ok=False (not raised); "
          f"failed conditions: {np.argwhere(~ok).tolist()}")
    assert good.mean() >= 0.9, f"only {good.sum()} of {N_DRAWS} prior draws simulated"
    x, y = states[good], obs[good]
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y)), "NaN/inf in a draw flagged ok"
    frac = x[..., [network.IDX[s] for s in network.FRACTION_STATES]]
    akt = x[..., [network.IDX[s] for s in ("AT", "AS", "ATS")]].sum(-1)
    report("prior draws", min_fraction=frac.min(), max_fraction=frac.max(), max_AKT_sum=akt.max())
    assert frac.min() >= -1e-9 and frac.max() <= 1 + 1e-9, (frac.min(), frac.max())
    assert akt.max() <= 1 + 1e-9, akt.max()
    pools = x[..., [network.IDX[s] for s in ("R", "IRS", "G")]]
    assert pools.min() >= -1e-9, pools.min()


def test_unique_steady_state_over_prior_draws(prior_runs):
    draws = prior_runs[0][:10]
    rng = np.random.default_rng(7)
    other = rng.uniform(0.0, 1.0, (len(draws), len(network.STATES)))  # a second start inside the physical region
    other[:, [network.IDX[s] for s in ("AT", "AS", "ATS")]] /= 3.0
    other[:, [network.IDX[s] for s in ("R", "IRS", "G")]] *= 2.0
    starts = np.stack([np.broadcast_to(np.asarray(network.initial_guess()), other.shape), other], axis=1)
    values = jnp.asarray(np.stack([parameters.as_array(v) for v in draws]))

    def both_starts(v, y0s):
        p = network.as_dict(v)
        return jax.vmap(lambda y0: simulate.steady_state(p, solver.SolverSettings(), y0))(y0s)

    def jacobian(v, y):
        p = network.as_dict(v)
        return jax.jacfwd(lambda x: network.vector_field(0.0, x, (p, p["L_b"], jnp.zeros(len(network.OCCUPANCIES)))))(y)

    y, ok = jax.jit(jax.vmap(both_starts))(values, jnp.asarray(starts))
    y, ok = np.asarray(y), np.asarray(ok)
    growth = np.linalg.eigvals(np.asarray(jax.jit(jax.vmap(jacobian))(values, y[:, 0]))).real.max(axis=1)
    report("steady state from two starts", ok=ok.all(axis=1).sum(),
           max_rel_diff=np.max(np.abs(y[:, 0] - y[:, 1]) / np.maximum(np.abs(y[:, 0]), 1e-12)),
           max_eigenvalue_real=growth.max())
    assert ok.all(), f"steady state not found: {ok}"
    np.testing.assert_allclose(y[:, 1], y[:, 0], rtol=1e-6, atol=1e-12)
    assert np.all(growth < 0), f"steady state not stable (largest real part of a Jacobian eigenvalue): {growth}"
