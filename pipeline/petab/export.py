"""Our feedback network and a blot dataset as a PEtab v1 problem (`python -m pipeline export-petab`), so
that AMICI, pyPESTO, PEtab.jl or Data2Dynamics users can run it.

The SBML model has the 22 states of `pipeline.model.network` with one rate rule each (the rate equations,
printed from the same `network.rates` the solver integrates), every network parameter, and the
inputs as assignment rules: the drug occupancies (Hill functions of the dose parameters
`dose_<drug>`, one per drug of `pipeline/data/drugs.csv`, competitive where drugs share a site)
and the ligand L = L_b + sum_s s_<s> stim_<s> [time >= t_stim].

The protocol of model-spec.md section 6 becomes PEtab's: the pre-equilibration condition
`starved__<line>` (no drug, no stimulus, the line's parameters) gives the steady state; each of our
conditions is a simulation condition that sets the doses from time 0, the stimulus from
t_stim = its pretreatment time, and the line's own parameters (a shifted parameter of a non-reference
line is the parameter `<parameter>__<line>`). PEtab times are therefore ours plus the pretreatment.

Observables: one per target, `<target> = scale * h(x)`, with one scale parameter per blot x target
(`scale__<blot>__<target>`, our marginalised scales made explicit), log-normal noise
(observableTransformation log, noise normal) with sigma `sigma__<target>`; the data are the
loading-normalised signals of `ingest`.

Parameter values are those of one point u of our model (default: the prior medians, shifts 0, each
sigma at its prior scale); the scales at their conditional optimum there. At those values the PEtab
log-likelihood equals `conditional_log_likelihood(model, u)`. Priors: the log-normal priors of the
estimated parameters are exported (parameterScaleNormal on log10); Beta priors and the shift and noise
priors have no PEtab v1 form and are left out (uniform within the bounds).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import libsbml
import numpy as np
import pandas as pd
import sympy as sp
import yaml
from jax.scipy import stats

from pipeline.model import network, observation, parameters
from pipeline.model.posterior import Model
from pipeline.vocabulary import DRUGS, TARGETS

COMPARTMENT = "cell"
T_STIM = "t_stim"


def nominal_point(model: Model) -> np.ndarray:
    """u at the prior medians, no shifts, each noise sigma at its prior scale."""
    u = np.zeros(model.dim)
    u[model._slices["log_sigma"]] = math.log(model.sigma_scale)
    return u


def conditional_log_likelihood(model: Model, u, log_scale=None):
    """(log-likelihood of every band given explicit blot scales (default: their conditional optimum), the log
    scales): the likelihood the exported PEtab problem has."""
    h, ok = model.predictions(u)
    d = model.design
    if log_scale is None:
        log_scale = observation.best_log_scales(jnp.log(h), model.log_y, d.group, len(d.groups))
    sigma = model.sigma(u)[model.band_target]
    ll = stats.norm.logpdf(model.log_y, jnp.log(h) + log_scale[d.group], sigma) - model.log_y
    return jnp.sum(ll), log_scale, ok


# ---- the SBML model -----------------------------------------------------------------------------------------
def _l3(expr: sp.Expr) -> str:
    """An SBML Level 3 infix formula of a sympy expression of +, *, powers, max and numbers."""
    if isinstance(expr, sp.Symbol):
        return expr.name
    if isinstance(expr, (sp.Integer, sp.Float, sp.Rational)) or expr.is_Number:
        return repr(float(expr))
    if isinstance(expr, sp.Add):
        return "(" + " + ".join(_l3(a) for a in expr.args) + ")"
    if isinstance(expr, sp.Mul):
        return "(" + " * ".join(_l3(a) for a in expr.args) + ")"
    if isinstance(expr, sp.Pow):
        return f"({_l3(expr.base)} ^ {_l3(expr.exp)})"
    if isinstance(expr, sp.Max):
        return f"max({', '.join(_l3(a) for a in expr.args)})"
    raise ValueError(f"no SBML form for {expr!r}")


def _symbolic_rates():
    """(the 22 rate expressions, observable expression per target) in sympy, from the network's own functions."""
    sym = lambda n: sp.Symbol(n, real=True)  # noqa: E731
    p = {n: sym(n) for n in parameters.names()}
    y = [sym(s) for s in network.STATES]
    th = {o: sym(f"theta_{o}") for o in network.OCCUPANCIES}
    rates = network.rates(y, p, sym("L"), th, maximum=sp.Max)
    obs = network.observable_expressions(dict(zip(network.STATES, y)), p)
    return rates, obs


def sbml_document(values: dict[str, float]) -> libsbml.SBMLDocument:
    """The network as an SBML L3V2 model, parameters at `values` (name -> natural value)."""
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("pi3k_akt_mtor_feedback")
    c = m.createCompartment()
    c.setId(COMPARTMENT), c.setSize(1.0), c.setConstant(True), c.setSpatialDimensions(3)
    y0 = np.asarray(network.initial_guess())
    for name, value in zip(network.STATES, y0):
        s = m.createSpecies()
        s.setId(name), s.setCompartment(COMPARTMENT), s.setInitialConcentration(float(value))
        s.setHasOnlySubstanceUnits(False), s.setBoundaryCondition(False), s.setConstant(False)

    def parameter(pid: str, value: float, constant: bool = True):
        p = m.createParameter()
        p.setId(pid), p.setValue(float(value)), p.setConstant(constant)

    for name in parameters.names():
        parameter(name, values[name])
    for drug in DRUGS:
        parameter(f"dose_{drug}", 0.0)
    for stim in network.STIMULUS_STRENGTH:
        parameter(f"stim_{stim}", 0.0)
    parameter(T_STIM, 0.0)
    parameter("L", 0.0, constant=False)
    for occ in network.OCCUPANCIES:
        parameter(f"theta_{occ}", 0.0, constant=False)

    def rule(variable: str, formula: str, rate: bool = False):
        r = m.createRateRule() if rate else m.createAssignmentRule()
        r.setVariable(variable)
        math_ast = libsbml.parseL3Formula(formula)
        if math_ast is None:
            raise ValueError(f"libsbml cannot parse {formula!r}: {libsbml.getLastParseL3Error()}")
        r.setMath(math_ast)

    for occ in network.OCCUPANCIES:  # drugs on one site compete (network.occupancies)
        ratios = [f"(max(dose_{drug}, 0) / {ic50}) ^ {hill}" for site, drug, ic50, hill in network.DRUG_SITES
                  if site == occ]
        total = ratios[0] if len(ratios) == 1 else f"({' + '.join(ratios) or '0'})"
        rule(f"theta_{occ}", f"{total} / (1 + {total})")
    stim = " + ".join(f"{strength} * stim_{s}" for s, strength in network.STIMULUS_STRENGTH.items())
    rule("L", f"L_b + ({stim}) * piecewise(1, time >= {T_STIM}, 0)")
    rates, _ = _symbolic_rates()
    for name, expr in zip(network.STATES, rates):
        rule(name, _l3(expr), rate=True)
    return doc


# ---- the PEtab tables ---------------------------------------------------------------------------------------
def tables(model: Model, ds, u) -> dict[str, pd.DataFrame]:
    """The condition, observable, measurement and parameter tables of the dataset at the point u."""
    d = model.design
    names = parameters.names()
    line_values = np.asarray(model.line_values(jnp.asarray(u)))
    _, log_scale, _ = conditional_log_likelihood(model, jnp.asarray(u))
    log_scale = np.asarray(log_scale)
    shifted = [p for _, p in model.shift_params]

    def line_cells(line_index: int) -> dict:  # PEtab: a parameter set per condition is not in the parameter table
        return {p: f"{p}__{d.lines[line_index]}" for p in shifted}

    conds = []
    zero_inputs = {**{f"dose_{drug}": 0.0 for drug in DRUGS}, **{f"stim_{s}": 0.0 for s in network.STIMULUS_STRENGTH},
                   T_STIM: 0.0}
    for i, line in enumerate(d.lines):
        conds.append({"conditionId": f"starved__{line}", **zero_inputs, **line_cells(i)})
    stim = np.asarray(d.conditions.stimulus)
    doses = np.asarray(d.conditions.doses_uM)
    pre = np.asarray(d.conditions.pretreatment_min)
    line_of = np.asarray(d.conditions.line)
    for c, cid in enumerate(d.condition_ids):
        row = {"conditionId": _petab_id(cid), **{f"dose_{drug}": float(doses[c, k]) for k, drug in enumerate(DRUGS)},
               **{f"stim_{s}": float(stim[c, k]) for k, s in enumerate(network.STIMULUS_STRENGTH)},
               T_STIM: float(pre[c]), **line_cells(int(line_of[c]))}
        conds.append(row)
    conditions = pd.DataFrame(conds)

    targets = [TARGETS[i] for i in sorted(set(d.target_index))]
    _, obs_expr = _symbolic_rates()
    observables = pd.DataFrame({
        "observableId": targets,
        "observableFormula": [f"observableParameter1_{t} * {_petab_formula(obs_expr[t])}" for t in targets],
        "observableTransformation": "log", "noiseFormula": [f"noiseParameter1_{t}" for t in targets],
        "noiseDistribution": "normal"})

    times = np.asarray(d.times)[d.cond_index, d.time_index] + pre[d.cond_index]
    measurements = pd.DataFrame({
        "observableId": [TARGETS[i] for i in d.target_index],
        "preequilibrationConditionId": [f"starved__{d.lines[line_of[c]]}" for c in d.cond_index],
        "simulationConditionId": [_petab_id(d.condition_ids[c]) for c in d.cond_index],
        "measurement": d.y, "time": times,
        "observableParameters": [_scale_id(*d.groups[g]) for g in d.group],
        "noiseParameters": [f"sigma__{TARGETS[i]}" for i in d.target_index],
        "datasetId": [_petab_id(b) for b, _ in (d.groups[g] for g in d.group)]})

    table = parameters.table()
    rows = []
    estimated = set(model.estimated)
    for k, name in enumerate(names):
        if name not in shifted:
            rows.append(_parameter_row(name, line_values[0, k], name in estimated, table))
    for i, line in enumerate(d.lines):
        for p in shifted:  # the reference line's value is estimated if the config estimates p; the others always
            rows.append(_parameter_row(f"{p}__{line}", line_values[i, names.index(p)], i > 0 or p in estimated,
                                       table, like=p))
    for g, (blot, target) in enumerate(d.groups):
        value = math.exp(log_scale[g])
        rows.append({"parameterId": _scale_id(blot, target), "parameterScale": "log10", "lowerBound": value * 1e-4,
                     "upperBound": value * 1e4, "nominalValue": value, "estimate": 1})
    sigma = np.asarray(model.sigma(jnp.asarray(u)))
    for t, s in zip(model.targets, sigma):
        rows.append({"parameterId": f"sigma__{t}", "parameterScale": "log10", "lowerBound": 1e-3, "upperBound": 10.0,
                     "nominalValue": float(s), "estimate": 1})
    params = pd.DataFrame(rows)
    return {"conditions": conditions, "observables": observables, "measurements": measurements, "parameters": params}


def _parameter_row(pid, value, estimate, table, like=None) -> dict:
    name = like or pid
    value = float(value)
    row = {"parameterId": pid, "parameterScale": "log10", "lowerBound": value * 1e-3, "upperBound": value * 1e3,
           "nominalValue": value, "estimate": int(bool(estimate))}
    if parameters.is_fraction(name):
        row.update(parameterScale="lin", lowerBound=0.0, upperBound=1.0)
    elif not math.isfinite(value) or value <= 0.0:
        row.update(parameterScale="lin", lowerBound=min(value, 0.0), upperBound=max(value, 1.0))
    elif estimate and name in table.index and table.loc[name, "prior"] == "lognormal":
        row.update(objectivePriorType="parameterScaleNormal",
                   objectivePriorParameters=f"{math.log10(table.loc[name, 'value']):.10g};"
                                            f"{table.loc[name, 'sigma_log10']:.10g}")
    return row


def _petab_formula(expr: sp.Expr) -> str:
    return str(expr).replace("**", "^")


def _petab_id(text: str) -> str:
    """A valid PEtab/SBML identifier from a dataset id."""
    out = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(text))
    return out if out[:1].isalpha() else f"c_{out}"


def _scale_id(blot: str, target: str) -> str:
    return f"scale__{_petab_id(blot)}__{target}"


def write(model: Model, ds, u, folder: str | Path) -> Path:
    """Write the PEtab problem (problem.yaml, model.xml and the four tables) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    values = dict(zip(parameters.names(), np.asarray(model.line_values(jnp.asarray(u)))[0]))
    libsbml.writeSBMLToFile(sbml_document(values), str(folder / "model.xml"))
    files = {"conditions": "conditions.tsv", "observables": "observables.tsv", "measurements": "measurements.tsv",
             "parameters": "parameters.tsv"}
    for key, frame in tables(model, ds, u).items():
        frame.to_csv(folder / files[key], sep="\t", index=False)
    spec = {"format_version": 1, "parameter_file": files["parameters"],
            "problems": [{"sbml_files": ["model.xml"], "condition_files": [files["conditions"]],
                          "measurement_files": [files["measurements"]], "observable_files": [files["observables"]]}]}
    (folder / "problem.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder / "problem.yaml"
