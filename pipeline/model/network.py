"""The PI3K-AKT-mTOR / RAS-MAPK feedback network (model-spec.md sections 1-3 and 5).

Pure array functions: `occupancies` (drug doses -> site occupancies, section 2; which drug binds which
site is the table `pipeline/data/drugs.csv`, see `pipeline.model.drugs`),
`vector_field(t, y, args)` (the rate equations of section 3, in diffrax's
signature) and `observables` (section 5). The vector field knows nothing about
solvers, tolerances or protocols; see `pipeline.model.simulate` for those.

Feedback loops are switched off by parameter values (`loop_overrides`), so the
equations stay exactly the spec's.
"""

from __future__ import annotations

import jax.numpy as jnp

from pipeline.model import drugs, parameters
from pipeline.vocabulary import DRUGS, STIMULI, TARGETS

STATES = (
    "R", "Ra", "IRS", "IRSs", "G", "P", "PIP3", "AT", "AS", "ATS", "M2",
    "Tp", "PRp", "M1", "SK", "S6a", "S6b", "E4", "F", "RAS", "MEK", "E",
)
FRACTION_STATES = tuple(s for s in STATES if s not in ("R", "IRS", "G"))  # spec section 1: in [0, 1]
IDX = {name: i for i, name in enumerate(STATES)}

# drug binding sites (spec section 2), the rate equations' own; `pipeline/data/drugs.csv` maps drugs onto them
OCCUPANCIES = ("alp", "MK", "ipa", "rap", "TK1", "TK2", "RL1", "RL2", "tram", "PIMi")
drugs.check_sites(OCCUPANCIES)
DRUG_SITES = tuple((b.site, b.drug, b.ic50, b.hill) for b in drugs.bindings())
"""(occupancy, drug, IC50 parameter, Hill parameter) of each row of drugs.csv."""

STIMULUS_STRENGTH = {s: f"s_{s}" for s in STIMULI if s != "none"}  # L = L_b + s_<stimulus> after the stimulus

# Feedback loops (spec section 3, "How each seed feedback loop is encoded") and the parameter
# values that switch each one off.
LOOPS = {
    "s6k_irs1": {"g_SI": 0.0, "k_Ss": 0.0},  # mTORC1-S6K -| IRS1 (Ser-phos and degradation)
    "grb10": {"g_G": 0.0},  # mTORC1 -> Grb10 -| RTK-PI3K coupling
    "s6k_sin1": {"K_SS": float("inf")},  # S6K -| Sin1 / mTORC2
    "foxo_rtk": {"g_F": 0.0},  # AKT -| FOXO -> RTK expression
    "erk_rtk": {"K_ER": float("inf")},  # ERK -| RTK/adaptor coupling to PI3K
    "erk_sos": {"K_ES": float("inf")},  # ERK -| SOS/RAS
    "cdk46_tsc2": {"k_T0": 0.0},  # CDK4/6 -> TSC2 (basal mTORC1 input)
}


# Inputs the network adds: mTORC1 activation takes b_M1 + Tp, and TSC2's basal inactivation k_T0 enters Tp as about
# k_T0 / k_Td, so blots inform b_M1 + k_T0 / k_Td rather than each (the all-8 SBC's ridge, benchmarks/README.md).
# (first summand, second summand, divisor of the second): `posterior.Model` samples their sum and share.
SUMMED_INPUTS = (("b_M1", "k_T0", "k_Td"),)


def loop_overrides(loops_off) -> dict[str, float]:
    """Parameter values that switch off the named feedback loops."""
    out = {}
    for loop in loops_off:
        if loop not in LOOPS:
            raise KeyError(f"unknown feedback loop {loop!r}; known: {', '.join(LOOPS)}")
        out.update(LOOPS[loop])
    return out


def as_dict(values) -> dict:
    """Parameter vector (table order) -> name -> scalar."""
    return {name: values[i] for i, name in enumerate(parameters.names())}


def occupancies(p: dict, doses_uM) -> jnp.ndarray:
    """Quasi-steady-state occupancy of each site (`OCCUPANCIES` order); `doses_uM` in `DRUGS` order.

    The drugs on one site compete: theta = sum_i r_i / (1 + sum_i r_i) with r_i = (D_i / IC50_i)^h_i,
    which for one drug is the Hill occupancy D^h / (D^h + IC50^h). A site no drug binds stays at 0.
    """
    doses = jnp.asarray(doses_uM)
    out = []
    for site in OCCUPANCIES:
        r = sum((dose_ratio(doses[DRUGS.index(drug)], p[ic50], p[hill])
                 for occ, drug, ic50, hill in DRUG_SITES if occ == site), jnp.zeros(()))
        out.append(r / (1.0 + r))
    return jnp.stack(out)


def dose_ratio(dose, ic50, hill):
    """(D / IC50)^h, 0 at D <= 0, with finite derivatives there in h and IC50 too (d/dh 0^h = 0^h log 0 is NaN:
    both `where`s keep the log away from 0)."""
    positive = dose > 0
    safe = jnp.where(positive, dose, 1.0)
    return jnp.where(positive, jnp.exp(hill * (jnp.log(safe) - jnp.log(ic50))), 0.0)


def vector_field(t, y, args):
    """dy/dt of the 22 states (spec section 3). args = (p: name -> value, L: ligand level, th: occupancies)."""
    p, L, th = args
    return jnp.stack(rates(y, p, L, dict(zip(OCCUPANCIES, th))))


def rates(y, p: dict, L, th: dict, maximum=jnp.maximum) -> list:
    """The 22 rate equations as a list, in plain arithmetic of y, p, L and th (occupancy name -> value): the
    same code gives the arrays of `vector_field` and, with sympy symbols and maximum=sympy.Max, the
    expressions of the PEtab export's SBML model."""
    R, Ra, IRS, IRSs, G, P, PIP3, AT, AS, ATS, M2, Tp, PRp, M1, SK, S6a, S6b, E4, F, RAS, MEK, E = y
    A00 = 1.0 - AT - AS - ATS
    X_e = p["X"] * (1.0 - th["PIMi"])
    Psi = (1.0 - p["phi_b"]) * (1.0 - th["alp"]) + p["phi_b"]

    # receptor: FOXO-driven synthesis, ligand-induced down-regulation
    dR = p["k_R"] * (1.0 + p["g_F"] * F) / (1.0 + p["g_F"]) - p["k_R"] * R - p["k_Rdeg"] * Ra
    dRa = p["k_Ra"] * L * (R - Ra) - (p["k_Ri"] + p["k_Rdeg"]) * Ra
    # mTORC1/S6K -| IRS1 (fast Ser-phos + slow degradation); mTORC1 -> Grb10
    dIRS = p["k_I"] * (1.0 - (1.0 + p["g_SI"] * SK) * IRS)
    dIRSs = p["k_Ss"] * SK * (1.0 - IRSs) - p["k_Sd"] * IRSs
    M1c = M1 * p["alpha_mTOR"] * (1.0 - th["TK1"]) * (1.0 - th["RL1"])
    M1_S6K = M1c * (1.0 - th["rap"])
    M1_4E = M1c * (1.0 - p["f_4E"] * th["rap"])
    dG = p["k_G"] * (p["g_G"] * M1_S6K - G)
    # PI3K; ERK -| RTK/adaptor coupling
    U = Ra * (p["w_IRS"] * IRS * (1.0 - IRSs) / (1.0 + G) + p["w_dir"]) / (1.0 + E / p["K_ER"]) \
        + p["u_P0"] + p["w_RASP"] * RAS
    dP = p["k_Pa"] * U * (1.0 - P) - p["k_Pi"] * P
    dPIP3 = p["k_P3"] * P * Psi * (1.0 - PIP3) - p["k_PTEN"] * p["rho_PTEN"] * PIP3
    # AKT: membrane recruitment (QSS), PDK1 -> T308, mTORC2 -> S473
    m = (1.0 - th["MK"]) * (p["m0"] + (1.0 - p["m0"]) * PIP3 / (p["K_PH"] / (1.0 + p["mu_ipa"] * th["ipa"]) + PIP3))
    M2e = M2 * p["alpha_mTOR"] * (1.0 - th["TK2"]) * (1.0 - th["RL2"])
    Lam = (1.0 - p["rho_ipa"] * th["ipa"]) * (1.0 + p["eps_MK"] * th["MK"])
    kT, kS, kdT, kdS, cT = p["k_T"], p["k_S"], p["kd_T"], p["kd_S"], p["c_T"]
    dAT = kT * m * A00 - kS * m * M2e * AT - kdT * Lam * AT + kdS * Lam * ATS
    dAS = kS * m * M2e * A00 - kT * m * AS - kdS * Lam * AS + cT * kdT * Lam * ATS
    dATS = kT * m * AS + kS * m * M2e * AT - (cT * kdT + kdS) * Lam * ATS
    A_act = p["AKT_rel"] * (p["w_T"] * AT + ATS) * (1.0 - th["ipa"]) * (1.0 - th["MK"])
    # mTORC2: PI3K-dependent; S6K -| Sin1
    dM2 = p["k_M2a"] * (p["b_M2"] + PIP3) * (1.0 - M2) / (1.0 + SK / p["K_SS"]) - p["k_M2i"] * M2
    # AKT -| TSC2 -> Rheb -> mTORC1; ERK/RSK, PIM and CDK4/6 also inactivate TSC2
    dTp = (p["k_TA"] * A_act + p["k_TE"] * E + p["k_TX"] * X_e + p["k_T0"]) * (1.0 - Tp) - p["k_Td"] * Tp
    dPRp = (p["k_PA"] * A_act + p["k_PX"] * X_e + p["k_P0"]) * (1.0 - PRp) - p["k_Pd"] * PRp
    dM1 = p["k_M1a"] * (p["b_M1"] + Tp) * (1.0 - M1) / (1.0 + (1.0 - PRp) / p["K_PR"]) - p["k_M1i"] * M1
    dSK = p["k_SKa"] * M1_S6K * (1.0 - SK) - p["k_SKd"] * SK
    dS6a = p["k_6a"] * SK * (1.0 - S6a) - p["k_6d"] * S6a
    dS6b = (p["k_6a"] * SK + p["k_6R"] * E) * (1.0 - S6b) - p["k_6d"] * S6b
    dE4 = (p["k_4a"] * M1_4E + p["k_4X"] * X_e) * (1.0 - E4) - p["k_4d"] * E4
    dF = p["k_Fi"] * (1.0 - F) - (p["k_Fo"] * A_act + p["k_Fo0"]) * F
    # RAS-MAPK; ERK -| SOS/RAS (Kholodenko-type); the power is taken of a non-negative base
    dRAS = p["k_RSa"] * (p["w_RR"] * Ra + p["u_R0"]) * (1.0 - RAS) / (1.0 + (maximum(E, 0.0) / p["K_ES"])
                                                                       ** p["n_ES"]) - p["k_RSi"] * RAS
    dMEK = p["k_Ma"] * RAS * (1.0 - p["f_tM"] * th["tram"]) * (1.0 - MEK) - p["k_Md"] * MEK
    dE = p["k_Ea"] * MEK * (1.0 - th["tram"]) * (1.0 - E) - p["k_Ed"] * E
    return [dR, dRa, dIRS, dIRSs, dG, dP, dPIP3, dAT, dAS, dATS, dM2,
            dTp, dPRp, dM1, dSK, dS6a, dS6b, dE4, dF, dRAS, dMEK, dE]


def observables(y, p: dict) -> jnp.ndarray:
    """The blot targets (vocabulary.TARGETS order) from states y[..., 22] (spec section 5)."""
    by_target = observable_expressions({name: y[..., i] for i, name in enumerate(STATES)}, p)
    return jnp.stack([by_target[t] for t in TARGETS], axis=-1)


def observable_expressions(s: dict, p: dict) -> dict:
    """Each blot target's model value from the states s (name -> value), in plain arithmetic."""
    return {
        "pAKT_S473": p["AKT_rel"] * (s["AS"] + s["ATS"]),
        "pAKT_T308": p["AKT_rel"] * (s["AT"] + s["ATS"]),
        "pS6_S240": s["S6a"],
        "pS6_S235": s["S6b"],
        "pERK": s["E"],
        "pPRAS40_T246": s["PRp"],
        "p4EBP1_T37": s["E4"],
        "IRS1": s["IRS"],
    }


def initial_guess() -> jnp.ndarray:
    """A start for pre-equilibration: pools at their drug-free levels, all activities off."""
    y = jnp.zeros(len(STATES))
    return y.at[IDX["R"]].set(1.0).at[IDX["IRS"]].set(1.0)
