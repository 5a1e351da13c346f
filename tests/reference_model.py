"""Independent numpy/scipy reference of the PI3K-AKT-mTOR / RAS-MAPK model.

Written literally from `shared/design/model-spec.md` (sections 1, 2, 3, 5, 6, 9)
to cross-check the JAX/diffrax implementation in tests.  Pure functions only.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp
from scipy.optimize import root

PARAMETERS_CSV = Path(__file__).parents[1] / "pipeline" / "data" / "parameters.csv"
NOMINAL: dict[str, float] = {
    str(k): float(v) for k, v in pd.read_csv(PARAMETERS_CSV).set_index("name")["value"].items()
}

# spec section 1, in order
STATES = ("R", "Ra", "IRS", "IRSs", "G", "P", "PIP3", "AT", "AS", "ATS", "M2", "Tp",
          "PRp", "M1", "SK", "S6a", "S6b", "E4", "F", "RAS", "MEK", "E")
IDX = {s: i for i, s in enumerate(STATES)}

# spec section 2: drug -> [(occupancy name, IC50 parameter, Hill parameter)]
DRUG_TERMS = {
    "alpelisib": [("th_alp", "IC50_alpelisib", "h_alpelisib")],
    "MK2206": [("th_MK", "IC50_MK2206", "h_MK2206")],
    "ipatasertib": [("th_ipa", "IC50_ipatasertib", "h_ipatasertib")],
    "everolimus": [("th_rap", "IC50_everolimus", "h_everolimus")],
    "AZD8055": [("th_TK1", "IC50_AZD8055", "h_AZD8055"),
                ("th_TK2", "IC50_AZD8055", "h_AZD8055")],
    "RapaLink1": [("th_RL1", "IC50_RapaLink1_C1", "h_RapaLink1"),
                  ("th_RL2", "IC50_RapaLink1_C2", "h_RapaLink1")],
    "trametinib": [("th_tram", "IC50_trametinib", "h_trametinib")],
    "AZD1208": [("th_PIMi", "IC50_AZD1208", "h_AZD1208")],
}
OCCUPANCIES = tuple(o for terms in DRUG_TERMS.values() for o, _, _ in terms)
RTOL, ATOL = 1e-10, 1e-12


def occupancies(p, doses: dict[str, float]) -> dict:
    """Spec section 2: QSS Hill occupancy theta = D^h/(D^h + IC50^h), D in uM."""
    th = dict.fromkeys(OCCUPANCIES, 0.0)
    for drug, dose in doses.items():
        for occ, ic50, hill in DRUG_TERMS[drug]:
            if dose > 0:
                dh = dose ** p[hill]
                th[occ] = dh / (dh + p[ic50] ** p[hill])
    return th


def rhs(y, p, L, th) -> np.ndarray:
    """Spec section 3 rate equations (22 states, X a constant parameter)."""
    (R, Ra, IRS, IRSs, G, P, PIP3, AT, AS, ATS, M2, Tp,
     PRp, M1, SK, S6a, S6b, E4, F, RAS, MEK, E) = y
    X_e = p["X"] * (1 - th["th_PIMi"])
    Psi = (1 - p["phi_b"]) * (1 - th["th_alp"]) + p["phi_b"]
    A00 = 1 - AT - AS - ATS
    # receptor, IRS1, Grb10
    M1c = M1 * p["alpha_mTOR"] * (1 - th["th_TK1"]) * (1 - th["th_RL1"])
    M1_S6K = M1c * (1 - th["th_rap"])
    M1_4E = M1c * (1 - p["f_4E"] * th["th_rap"])
    dR = p["k_R"] * (1 + p["g_F"] * F) / (1 + p["g_F"]) - p["k_R"] * R - p["k_Rdeg"] * Ra
    dRa = p["k_Ra"] * L * (R - Ra) - (p["k_Ri"] + p["k_Rdeg"]) * Ra
    dIRS = p["k_I"] * (1 - (1 + p["g_SI"] * SK) * IRS)
    dIRSs = p["k_Ss"] * SK * (1 - IRSs) - p["k_Sd"] * IRSs
    dG = p["k_G"] * (p["g_G"] * M1_S6K - G)
    # PI3K, PIP3
    U = (Ra * (p["w_IRS"] * IRS * (1 - IRSs) / (1 + G) + p["w_dir"]) / (1 + E / p["K_ER"])
         + p["u_P0"] + p["w_RASP"] * RAS)
    dP = p["k_Pa"] * U * (1 - P) - p["k_Pi"] * P
    dPIP3 = p["k_P3"] * P * Psi * (1 - PIP3) - p["k_PTEN"] * p["rho_PTEN"] * PIP3
    # AKT two-site four-form
    m = (1 - th["th_MK"]) * (p["m0"] + (1 - p["m0"]) * PIP3
                             / (p["K_PH"] / (1 + p["mu_ipa"] * th["th_ipa"]) + PIP3))
    M2e = M2 * p["alpha_mTOR"] * (1 - th["th_TK2"]) * (1 - th["th_RL2"])
    Lam = (1 - p["rho_ipa"] * th["th_ipa"]) * (1 + p["eps_MK"] * th["th_MK"])
    kT, kS, kdT, kdS, cT = p["k_T"], p["k_S"], p["kd_T"], p["kd_S"], p["c_T"]
    dAT = kT * m * A00 - kS * m * M2e * AT - kdT * Lam * AT + kdS * Lam * ATS
    dAS = kS * m * M2e * A00 - kT * m * AS - kdS * Lam * AS + cT * kdT * Lam * ATS
    dATS = kT * m * AS + kS * m * M2e * AT - (cT * kdT + kdS) * Lam * ATS
    A_act = p["AKT_rel"] * (p["w_T"] * AT + ATS) * (1 - th["th_ipa"]) * (1 - th["th_MK"])
    # mTORC2, TSC2, PRAS40, mTORC1 and outputs
    dM2 = (p["k_M2a"] * (p["b_M2"] + PIP3) * (1 - M2) / (1 + SK / p["K_SS"])
           - p["k_M2i"] * M2)
    dTp = ((p["k_TA"] * A_act + p["k_TE"] * E + p["k_TX"] * X_e + p["k_T0"]) * (1 - Tp)
           - p["k_Td"] * Tp)
    dPRp = (p["k_PA"] * A_act + p["k_PX"] * X_e + p["k_P0"]) * (1 - PRp) - p["k_Pd"] * PRp
    dM1 = (p["k_M1a"] * (p["b_M1"] + Tp) * (1 - M1) / (1 + (1 - PRp) / p["K_PR"])
           - p["k_M1i"] * M1)
    dSK = p["k_SKa"] * M1_S6K * (1 - SK) - p["k_SKd"] * SK
    dS6a = p["k_6a"] * SK * (1 - S6a) - p["k_6d"] * S6a
    dS6b = (p["k_6a"] * SK + p["k_6R"] * E) * (1 - S6b) - p["k_6d"] * S6b
    dE4 = (p["k_4a"] * M1_4E + p["k_4X"] * X_e) * (1 - E4) - p["k_4d"] * E4
    dF = p["k_Fi"] * (1 - F) - (p["k_Fo"] * A_act + p["k_Fo0"]) * F
    # RAS-MAPK
    dRAS = (p["k_RSa"] * (p["w_RR"] * Ra + p["u_R0"]) * (1 - RAS)
            / (1 + (E / p["K_ES"]) ** p["n_ES"]) - p["k_RSi"] * RAS)
    dMEK = p["k_Ma"] * RAS * (1 - p["f_tM"] * th["th_tram"]) * (1 - MEK) - p["k_Md"] * MEK
    dE = p["k_Ea"] * MEK * (1 - th["th_tram"]) * (1 - E) - p["k_Ed"] * E
    return np.array([dR, dRa, dIRS, dIRSs, dG, dP, dPIP3, dAT, dAS, dATS, dM2, dTp,
                     dPRp, dM1, dSK, dS6a, dS6b, dE4, dF, dRAS, dMEK, dE])


def observables(y, p) -> dict[str, np.ndarray]:
    """Spec section 5; y has states along axis 0 (shape (22,) or (22, n_times))."""
    y = np.asarray(y)
    s = {name: y[i] for name, i in IDX.items()}
    return {
        "pAKT_S473": p["AKT_rel"] * (s["AS"] + s["ATS"]),
        "pAKT_T308": p["AKT_rel"] * (s["AT"] + s["ATS"]),
        "pS6_S240": s["S6a"],
        "pS6_S235": s["S6b"],
        "pERK": s["E"],
        "pPRAS40_T246": s["PRp"],
        "p4EBP1_T37": s["E4"],
        "IRS1": s["IRS"],
        "RTK": s["R"],
    }


def _integrate(y0, p, L, th, t_end, t_eval=None):
    sol = solve_ivp(lambda t, y: rhs(y, p, L, th), (0.0, t_end), y0, method="Radau",
                    rtol=RTOL, atol=ATOL, t_eval=t_eval, dense_output=False)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    return sol


def steady_state(p, horizon_min: float = 2e5) -> np.ndarray:
    """Serum-starved, drug-free steady state (spec section 6 step 1): L = L_b, theta = 0.

    Long Radau run from R = IRS = 1 (else 0), then a hybr Newton polish on rhs = 0.
    """
    th = occupancies(p, {})
    y0 = np.zeros(len(STATES))
    y0[IDX["R"]] = y0[IDX["IRS"]] = 1.0
    y_int = _integrate(y0, p, p["L_b"], th, horizon_min).y[:, -1]
    sol = root(lambda y: rhs(y, p, p["L_b"], th), y_int, method="hybr", tol=1e-14)
    y = sol.x if np.max(np.abs(rhs(sol.x, p, p["L_b"], th))) <= np.max(
        np.abs(rhs(y_int, p, p["L_b"], th))) else y_int
    res = np.max(np.abs(rhs(y, p, p["L_b"], th)))
    assert res < 1e-10, f"steady-state residual {res:.3g}"
    assert np.max(np.abs(y - y_int)) < 1e-6, "Newton polish moved away from the integrated state"
    return y


def simulate(p, stimulus: str, doses: dict[str, float], pretreatment_min: float,
             times) -> dict[str, np.ndarray]:
    """Spec section 6 protocol: starved steady state -> drug pretreatment at L_b for
    `pretreatment_min` -> stimulus step at t = 0 (drugs kept); observables at `times`
    (minutes since the stimulus)."""
    times = np.asarray(times, dtype=float)
    th = occupancies(p, doses)
    y = steady_state(p)
    if pretreatment_min > 0:
        y = _integrate(y, p, p["L_b"], th, float(pretreatment_min)).y[:, -1]
    L = p["L_b"] + (0.0 if stimulus == "none" else p[f"s_{stimulus}"])
    t_end = float(times[-1]) if times.size and times[-1] > 0 else 0.0
    if t_end == 0.0:
        ys = np.repeat(y[:, None], times.size, axis=1)
    else:
        ys = _integrate(y, p, L, th, t_end, t_eval=times).y
    return observables(ys, p)
