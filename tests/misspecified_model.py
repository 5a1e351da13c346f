"""An independent generator of MISSPECIFIED blot datasets (format v1), for the misspecification benchmark
(benchmarks/misspecified.py) and its CI version (tests/test_misspecified.py).

It never calls pipeline.model.simulate or pipeline.model.network: the dynamics are tests/reference_model.py's scipy
right-hand side (written literally from the model spec), extended by the departures below. With every
departure off and the parameters at the table's values its observables are reference_model.simulate's
(tests/test_misspecified.py checks that). The departures, the way real cells and blots depart from the
model the fit assumes:

- **Hill slopes** other than 1: h_<drug> drawn log-uniformly in [0.6, 1.8] per drug, the same in both lines.
- **Drug onset**: each drug's occupancies follow d theta/dt = k_on (theta_ss - theta) from the drug's
  addition (theta = 0 before), k_on log-uniform in [0.05, 0.5] /min; the rapalog and RapaLink-1
  (FKBP12-dependent) slower, in [0.02, 0.08] /min. The fit's model has occupancies at QSS from the addition.
- **A delayed feedback arm**: S6K -| IRS1 (both the fast Ser-phosphorylation IRSs and the slow IRS1
  degradation) acts through a 2-stage linear chain, dz1 = k (SK - z1), dz2 = k (z1 - z2), k = 2 / tau,
  with a mean delay tau drawn in [30, 60] min; every other S6K effect is undelayed.
- **Kinetic parameters off the table**: every log-normal parameter of pipeline/data/parameters.csv except
  stimulus strengths, IC50s and Hill slopes (rates, gains, constants, basal inputs, turnover, the held
  "fixed_unobserved" ones and the mechanism parameters too) times a factor log-uniform in [1/2, 2],
  drawn once per dataset and IDENTICAL in both lines; Beta fractions stay at the table's values.
- **Per-lane loading errors**: the loading control reads the lane's true load times exp(N(0, 0.05^2)).
- **A per-lysate random effect**: each lysate (line x condition x time x replicate, one dish) carries a
  factor exp(N(0, 0.08^2)) common to every target measured from it (dish-to-dish biological variation,
  correlated across the targets' blots).
- **A little additive background**: each blot x target adds 1 % of its largest expected band to every band
  (background subtraction that leaves a floor; the fit's model has no offset by default).

Then the usual blot model: a scale per blot x target (log-uniform over 300-30000), log-normal band noise
(sigma 0.15), a loading per lane (log-normal around 5000). Mechanism shifts are planted in the resistant
line only (MECHANISM_SHIFTS, after model-spec section 4); a null dataset has identical lines. `make_dataset`
can also write several non-reference lines on the same blots (the CI test: a null line and a planted line
beside the parental one, so that one fit, compiled once, checks both).

The brief design (`brief_design`): two lines x 10 conditions (vehicle; MK-2206 0.1, 1; ipatasertib 0.1, 1;
ipatasertib 1 + AZD1208 1; alpelisib 1; everolimus 0.01; AZD8055 0.1; trametinib 0.01 uM), 60 min of drug,
then IGF-1 10 nM, times 0-1440 min, five targets, two replicates, one blot per target x drug group x
replicate holding both lines and a vehicle lane of each line (so every blot shares the vehicle).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.integrate import solve_ivp

import reference_model as ref

TABLE = pd.read_csv(ref.PARAMETERS_CSV).set_index("name")
DRUGS = tuple(ref.DRUG_TERMS)
SLOW_ONSET = ("everolimus", "RapaLink1")
N = len(ref.STATES)  # 22; then z1, z2 (delay chain), then one occupancy per ref.OCCUPANCIES
OCC_IDX = {o: N + 2 + i for i, o in enumerate(ref.OCCUPANCIES)}
OCC_DRUG = {o: d for d, terms in ref.DRUG_TERMS.items() for o, _, _ in terms}
RTOL, ATOL = 1e-8, 1e-10

# planted folds per mechanism (model-spec section 4; phi_b 0.1 -> 0.5)
MECHANISM_SHIFTS: dict[str, dict[str, float]] = {
    "akt_allosteric_binding": {"IC50_MK2206": 30.0},
    "pim_parallel_kinase": {"X": 5.0},
    "pten_loss": {"rho_PTEN": 0.2, "phi_b": 5.0},
    "mtorc1_hyperactivation": {"k_TE": 5.0, "k_T0": 5.0, "b_M1": 5.0},
    "mtor_activating_mutation": {"alpha_mTOR": 3.0},
    "rapalog_binding_loss": {"IC50_everolimus": 300.0},
    "foxo_rtk_feedback": {"g_F": 4.0},
    "mapk_compensation": {"u_R0": 5.0, "w_RR": 2.0},
}


def kinetic_parameters() -> list[str]:
    """The parameters moved off the table: log-normal ones except stimuli, IC50s and Hill slopes."""
    t = TABLE
    return [n for n in t.index if t.loc[n, "prior"] == "lognormal"
            and t.loc[n, "group"] not in ("stimulus", "ic50", "hill")]


@dataclasses.dataclass
class Departures:
    """What the generator adds to the spec model; the defaults are none (the spec model exactly)."""
    hill: dict = dataclasses.field(default_factory=dict)        # drug -> Hill slope (else the table's)
    k_on: dict = dataclasses.field(default_factory=dict)        # drug -> onset rate /min (else QSS)
    irs_delay_min: float = 0.0                                   # mean delay of S6K -| IRS1; 0: none
    off_table: dict = dataclasses.field(default_factory=dict)   # parameter -> factor, both lines
    loading_error_sd: float = 0.0
    lysate_sd: float = 0.0
    background: float = 0.0

    def as_dict(self) -> dict:
        return {"hill": {k: round(float(v), 4) for k, v in self.hill.items()},
                "k_on_per_min": {k: round(float(v), 4) for k, v in self.k_on.items()},
                "irs_delay_mean_min": round(float(self.irs_delay_min), 2),
                "off_table_factors": {k: round(float(v), 4) for k, v in self.off_table.items()},
                "loading_error_sd": self.loading_error_sd, "lysate_sd": self.lysate_sd,
                "background_fraction": self.background}


def draw_departures(rng: np.random.Generator) -> Departures:
    """All departures on, drawn from `rng` (one draw per dataset, shared by its lines)."""
    def logu(lo, hi):
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    hill = {d: logu(0.6, 1.8) for d in DRUGS}
    k_on = {d: (logu(0.02, 0.08) if d in SLOW_ONSET else logu(0.05, 0.5)) for d in DRUGS}
    delay = float(rng.uniform(30.0, 60.0))
    off = {n: logu(0.5, 2.0) for n in kinetic_parameters()}
    return Departures(hill=hill, k_on=k_on, irs_delay_min=delay, off_table=off,
                      loading_error_sd=0.05, lysate_sd=0.08, background=0.01)


def line_parameters(dep: Departures, shifts: dict[str, float] | None = None) -> dict[str, float]:
    """Parameter values of one line: the table, times the off-table factors, the Hill slopes, then `shifts`
    (fold changes; a fraction's fold applies to its value)."""
    p = dict(ref.NOMINAL)
    for n, f in dep.off_table.items():
        p[n] *= f
    for d, h in dep.hill.items():
        p[f"h_{d}"] = float(h)
    for n, f in (shifts or {}).items():
        p[n] *= f
        if TABLE.loc[n, "prior"] == "beta":
            assert 0 < p[n] < 1, (n, p[n])
    return p


def _rhs(y, p, L, th_ss, dep: Departures, onset: dict):
    x = y[:N]
    th = {o: (y[OCC_IDX[o]] if OCC_DRUG[o] in onset else th_ss[o]) for o in ref.OCCUPANCIES}
    dx = ref.rhs(x, p, L, th)
    dz = np.zeros(2)
    if dep.irs_delay_min > 0:
        k = 2.0 / dep.irs_delay_min
        SK, z1, z2 = x[ref.IDX["SK"]], y[N], y[N + 1]
        dz = np.array([k * (SK - z1), k * (z1 - z2)])
        IRS, IRSs = x[ref.IDX["IRS"]], x[ref.IDX["IRSs"]]
        dx[ref.IDX["IRS"]] = p["k_I"] * (1 - (1 + p["g_SI"] * z2) * IRS)
        dx[ref.IDX["IRSs"]] = p["k_Ss"] * z2 * (1 - IRSs) - p["k_Sd"] * IRSs
    dth = np.zeros(len(ref.OCCUPANCIES))
    for o in ref.OCCUPANCIES:
        d = OCC_DRUG[o]
        if d in onset:
            dth[OCC_IDX[o] - N - 2] = onset[d] * (th_ss[o] - y[OCC_IDX[o]])
    return np.concatenate([dx, dz, dth])


def _integrate(y0, p, L, th_ss, dep, onset, t_span, t_eval=None, rtol=RTOL, atol=ATOL):
    sol = solve_ivp(lambda t, y: _rhs(y, p, L, th_ss, dep, onset), t_span, y0, method="Radau",
                    rtol=rtol, atol=atol, t_eval=t_eval)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    return sol


def steady_state(p) -> np.ndarray:
    """Serum-starved, drug-free steady state of the extended system: the spec's (the delay chain at SK,
    occupancies 0)."""
    x = ref.steady_state(p)
    y = np.zeros(N + 2 + len(ref.OCCUPANCIES))
    y[:N] = x
    y[N] = y[N + 1] = x[ref.IDX["SK"]]
    return y


def simulate(p, doses: dict[str, float], pretreatment_min: float, times, dep: Departures | None = None,
             stimulus: str = "IGF1", y_ss=None, rtol=RTOL, atol=ATOL) -> dict[str, np.ndarray]:
    """Observables at `times` (min since the stimulus) of one condition: steady state, drugs added
    `pretreatment_min` before the stimulus (onset from there), stimulus step at t = 0, drugs kept."""
    dep = dep or Departures()
    times = np.asarray(times, dtype=float)
    doses = {d: float(x) for d, x in doses.items() if x > 0}
    th_ss = ref.occupancies(p, doses)
    onset = {d: dep.k_on[d] for d in doses if d in dep.k_on}
    y = (steady_state(p) if y_ss is None else y_ss).copy()
    if pretreatment_min > 0:
        y = _integrate(y, p, p["L_b"], th_ss, dep, onset, (0.0, float(pretreatment_min)),
                       rtol=rtol, atol=atol).y[:, -1]
    L = p["L_b"] + (0.0 if stimulus == "none" else p[f"s_{stimulus}"])
    if times.size and times[-1] > 0:
        ys = _integrate(y, p, L, th_ss, dep, onset, (0.0, float(times[-1])), t_eval=times,
                        rtol=rtol, atol=atol).y
    else:
        ys = np.repeat(y[:, None], times.size, axis=1)
    return ref.observables(ys[:N], p)


# ---- designs and datasets ------------------------------------------------------------------------------
def brief_design() -> dict:
    """The benchmark's design: conditions (name, doses, drug group), times, targets, replicates."""
    return {"conditions": [
        ("vehicle", {}, "vehicle"),
        ("MK2206_0p1", {"MK2206": 0.1}, "MK2206"), ("MK2206_1", {"MK2206": 1.0}, "MK2206"),
        ("ipatasertib_0p1", {"ipatasertib": 0.1}, "ipatasertib"),
        ("ipatasertib_1", {"ipatasertib": 1.0}, "ipatasertib"),
        ("ipatasertib_1_AZD1208_1", {"ipatasertib": 1.0, "AZD1208": 1.0}, "ipatasertib"),
        ("alpelisib_1", {"alpelisib": 1.0}, "alpelisib"),
        ("everolimus_0p01", {"everolimus": 0.01}, "everolimus"),
        ("AZD8055_0p1", {"AZD8055": 0.1}, "AZD8055"),
        ("trametinib_0p01", {"trametinib": 0.01}, "trametinib")],
        "times": [0, 5, 15, 30, 60, 120, 240, 1440],
        "targets": ["pAKT_S473", "pAKT_T308", "pPRAS40_T246", "pS6_S240", "pERK"],
        "replicates": 2, "pretreatment_min": 60, "sigma": 0.15}


def small_design() -> dict:
    """The CI design: 4 conditions, 6 times, 4 targets, 2 replicates."""
    return {"conditions": [
        ("vehicle", {}, "vehicle"),
        ("MK2206_0p1", {"MK2206": 0.1}, "MK2206"), ("MK2206_1", {"MK2206": 1.0}, "MK2206"),
        ("ipatasertib_1", {"ipatasertib": 1.0}, "ipatasertib")],
        "times": [0, 5, 15, 60, 240, 1440],
        "targets": ["pAKT_S473", "pPRAS40_T246", "pS6_S240", "pERK"],
        "replicates": 2, "pretreatment_min": 60, "sigma": 0.15}


def make_dataset(out: str | Path, mechanism: str | None, seed: int, design: dict | None = None,
                 departures: bool = True, name: str | None = None, lines: dict | None = None) -> dict:
    """Writes a dataset folder (dataset.yaml, conditions.csv, measurements.csv, truth.yaml) with
    `mechanism` (a key of MECHANISM_SHIFTS, or None: a null) planted in the line `resistant`; returns the
    truth. `lines` ({line: mechanism or None}) replaces that one non-reference line by several (all on
    the same blots as `parental`, with the same departures)."""
    design = design or brief_design()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dep = draw_departures(rng) if departures else Departures()
    lines = {"resistant": mechanism} if lines is None else dict(lines)
    all_lines = ("parental", *lines)
    params = {"parental": line_parameters(dep)}
    params.update({ln: line_parameters(dep, MECHANISM_SHIFTS[m] if m else {}) for ln, m in lines.items()})
    drugs = [d for d in DRUGS if any(d in c[1] for c in design["conditions"])]
    times, targets = design["times"], design["targets"]

    # expected observables per line x condition
    h = {}
    for line in all_lines:
        y_ss = steady_state(params[line])
        for cname, doses, _ in design["conditions"]:
            obs = simulate(params[line], doses, design["pretreatment_min"], times, dep, y_ss=y_ss)
            h[line, cname] = {t: np.asarray(obs[t], dtype=float) for t in targets}

    cond_rows = []
    for line in all_lines:
        for cname, doses, _ in design["conditions"]:
            cond_rows.append({"condition_id": f"{line}_{cname}", "cell_line": line, "stimulus": "IGF1",
                              "stimulus_conc": 10, "pretreatment_min": design["pretreatment_min"],
                              **{f"{d}_uM": doses.get(d, 0.0) for d in drugs}})
    groups = [g for g in dict.fromkeys(c[2] for c in design["conditions"]) if g != "vehicle"] or ["vehicle"]
    lysate = {}  # (line, condition, time index, replicate) -> factor shared by all targets
    rows = []
    for rep in range(1, design["replicates"] + 1):
        for g in groups:
            conds = [c for c in design["conditions"] if c[2] in ("vehicle", g)]
            for target in targets:
                blot = f"r{rep}_{g}_{target}"
                scale = math.exp(rng.uniform(math.log(300), math.log(30000)))
                bg = dep.background * max(float(np.max(h[line, c[0]][target])) for line in all_lines
                                          for c in conds)
                for line in all_lines:
                    for cname, _, _ in conds:
                        for i, t in enumerate(times):
                            key = (line, cname, i, rep)
                            if key not in lysate:
                                lysate[key] = math.exp(dep.lysate_sd * rng.normal())
                            load = 5000.0 * math.exp(0.2 * rng.normal())
                            value = h[line, cname][target][i]
                            if value + bg <= 0:
                                continue
                            signal = (scale * lysate[key] * (value + bg) * load / 5000.0
                                      * math.exp(design["sigma"] * rng.normal()))
                            loading = load * math.exp(dep.loading_error_sd * rng.normal())
                            rows.append({"blot_id": blot, "condition_id": f"{line}_{cname}",
                                         "time_min": t, "target": target, "signal": float(f"{signal:.6g}"),
                                         "loading": float(f"{loading:.6g}"), "replicate": rep})
    pd.DataFrame(cond_rows).to_csv(out / "conditions.csv", index=False)
    pd.DataFrame(rows).to_csv(out / "measurements.csv", index=False)
    name = name or out.name
    planted_text = ", ".join(f"{ln}: {m or 'nothing (null)'}" for ln, m in lines.items())
    desc = (f"Simulated by tests/misspecified_model.py (independent scipy generator with departures from "
            f"the fitted model); planted: {planted_text}; seed {seed}.")
    (out / "dataset.yaml").write_text(yaml.safe_dump(
        {"name": name, "description": desc, "reference_line": "parental",
         "provenance": "simulated (tests/misspecified_model.py); truth in truth.yaml", "format_version": 1},
        sort_keys=False))

    def planted(line):
        m = lines[line]
        return {n: {"fold": f, "parental": float(params["parental"][n]), line: float(params[line][n]),
                    "log2_fc": float(np.log2(f))} for n, f in (MECHANISM_SHIFTS[m] if m else {}).items()}

    if list(lines) == ["resistant"]:
        head = {"mechanism": lines["resistant"], "planted": planted("resistant")}
    else:
        head = {"lines": {ln: {"mechanism": m, "planted": planted(ln)} for ln, m in lines.items()}}
    truth = {"name": name, **head, "seed": seed,
             "sigma": design["sigma"], "departures": dep.as_dict() if departures else "none",
             "design": {"conditions": [c[0] for c in design["conditions"]], "times": list(times),
                        "targets": list(targets), "replicates": design["replicates"]}}
    (out / "truth.yaml").write_text(yaml.safe_dump(truth, sort_keys=False))
    return truth
