"""export-petab: the exported problem passes PEtab's linter, and an independent simulator (libroadrunner,
CVODE) running it from the PEtab files alone gets our log-likelihood."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import yaml

from pipeline import cli, config, fit
from pipeline.blots import dataset, ingest
from pipeline.petab import export as petabexport

ONE_SHIFT = Path(__file__).parent / "data" / "one_shift"


def roadrunner_log_likelihood(yaml_path: Path) -> float:
    """The PEtab v1 log-likelihood at the nominal values, simulated by libroadrunner: pre-equilibration by
    integration and a Newton steady-state solve, condition overrides, then integration between the output
    times (and the inputs' switching times, which PEtab names `t_stim` in the condition table here)."""
    import petab.v1 as petab
    import roadrunner
    from petab.v1.math import sympify_petab

    pp = petab.Problem.from_yaml(str(yaml_path))
    rr = roadrunner.RoadRunner(str(yaml_path.parent / "model.xml"))
    rr.integrator.relative_tolerance, rr.integrator.absolute_tolerance = 1e-10, 1e-12
    rr.integrator.maximum_num_steps = 200_000
    nominal = pp.parameter_df["nominalValue"].to_dict()
    model_params = set(rr.model.getGlobalParameterIds())
    species = list(rr.model.getFloatingSpeciesIds())

    def value(cell):
        return float(nominal[cell]) if isinstance(cell, str) else float(cell)

    def apply(condition_id):
        for column, cell in pp.condition_df.loc[condition_id].items():
            if column in model_params:
                rr[column] = value(cell)

    formulas = {}
    for oid, row in pp.observable_df.iterrows():
        expr = sympify_petab(row["observableFormula"])
        symbols = sorted(expr.free_symbols, key=str)
        formulas[oid] = (sp.lambdify(symbols, expr, "numpy"), [str(s) for s in symbols])

    ll = 0.0
    meas = pp.measurement_df
    for (pre, sim), rows in meas.groupby(["preequilibrationConditionId", "simulationConditionId"], sort=False):
        rr.resetAll()
        for pid, v in nominal.items():
            if pid in model_params:
                rr[pid] = v
        apply(pre)
        rr.simulate(0.0, 3000.0, 2)
        rr.steadyState()
        apply(sim)
        t_switch = float(pp.condition_df.loc[sim, "t_stim"])
        stops = sorted(set(rows["time"].astype(float)) | {t_switch} - {0.0})
        states, t0 = {0.0: {s: rr[s] for s in species}}, 0.0
        for t1 in stops:
            rr.simulate(t0, t1, 2)
            states[t1] = {s: rr[s] for s in species}
            t0 = t1
        for _, r in rows.iterrows():
            fn, names = formulas[r["observableId"]]
            env = {**states[float(r["time"])], **{p: rr[p] for p in model_params}}
            env[f"observableParameter1_{r['observableId']}"] = nominal[r["observableParameters"]]
            h = fn(*[env[n] for n in names])
            sigma = nominal[r["noiseParameters"]]
            y = r["measurement"]
            ll += -0.5 * math.log(2 * math.pi * sigma**2) - 0.5 * ((math.log(y) - math.log(h)) / sigma) ** 2 \
                - math.log(y)
    return ll


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The one_shift dataset exported at a point where every line differs (all shifts and estimates moved)."""
    folder = tmp_path_factory.mktemp("export")
    raw = {"analysis": "t", "dataset": str(ONE_SHIFT),
           "model": {"estimate": ["kd_T", "IC50_MK2206", "c_T"],
                     "shift_mechanisms": ["akt_allosteric_binding", "pim_parallel_kinase", "pten_loss"]},
           "solver": {"rtol": 1e-10, "atol": 1e-12, "max_steps": 100_000}}
    (folder / "config.yaml").write_text(yaml.safe_dump(raw))
    cfg = config.load(folder / "config.yaml")
    ds = ingest.to_xarray(dataset.load(ONE_SHIFT))
    m = fit.model(cfg, ds)
    u = petabexport.nominal_point(m)
    u[:len(m.estimated)] = 0.3
    shifts = [i for i, c in enumerate(m.coords) if c.startswith("shift:")]
    u[shifts] = np.resize([1.5, -1.0, 0.8], len(shifts))
    ll, _, ok = petabexport.conditional_log_likelihood(m, u)
    assert bool(ok)
    return petabexport.write(m, ds, u, folder / "petab"), float(ll)


def test_export_command_writes_a_problem(tmp_path, capsys):
    raw = {"analysis": "t", "dataset": str(ONE_SHIFT), "model": {"shift_mechanisms": ["akt_allosteric_binding"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert cli.main(["export-petab", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "petab")]) == 0
    assert "log-likelihood at the exported values" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "petab").iterdir()) == [
        "conditions.tsv", "measurements.tsv", "model.xml", "observables.tsv", "parameters.tsv", "problem.yaml"]


def test_student_t_noise_is_refused_by_name_not_exported_as_normal(tmp_path, capsys):
    raw = {"analysis": "t", "dataset": str(ONE_SHIFT), "model": {"noise": "student_t"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert cli.main(["export-petab", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "petab")]) != 0
    err = capsys.readouterr().err
    assert "model.noise" in err and "student_t" in err and "lognormal" in err and "Traceback" not in err
    assert not (tmp_path / "petab").exists()


def test_integrated_sigma_is_refused_by_name(tmp_path, capsys):
    raw = {"analysis": "t", "dataset": str(ONE_SHIFT), "prior": {"integrate_sigma": True}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert cli.main(["export-petab", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "petab")]) != 0
    err = capsys.readouterr().err
    assert "prior.integrate_sigma" in err and "integrate_sigma: false" in err and "Traceback" not in err
    assert not (tmp_path / "petab").exists()


def test_exported_problem_passes_petablint(exported):
    import petab.v1 as petab

    problem = petab.Problem.from_yaml(str(exported[0]))
    assert not petab.lint_problem(problem)  # True means errors were found


def test_roadrunner_gets_our_log_likelihood(exported):
    yaml_path, ours = exported
    theirs = roadrunner_log_likelihood(yaml_path)
    assert theirs == pytest.approx(ours, rel=1e-4)


def test_our_importer_reads_the_export_back(exported):
    """The round trip: pipeline.petab.problem on the exported files gives the same log-likelihood."""
    import jax

    from pipeline.petab import problem as petabproblem

    yaml_path, ours = exported
    problem = petabproblem.load(yaml_path)
    ll, ok = jax.jit(lambda x: petabproblem.log_likelihood(problem, x))(problem.x_nominal)
    assert bool(ok) and float(ll) == pytest.approx(ours, rel=1e-8)


def test_sites_with_several_drugs_get_the_competitive_occupancy(monkeypatch):
    """One drug per site: the Hill occupancy as before; two on one site: sum r / (1 + sum r)."""
    import libsbml

    from pipeline.model import network, parameters

    monkeypatch.setattr(network, "DRUG_SITES", network.DRUG_SITES + (("MK", "ipatasertib", "IC50_ipatasertib",
                                                                      "h_ipatasertib"),))
    doc = petabexport.sbml_document(parameters.nominal())
    formula = {r.getVariable(): libsbml.formulaToL3String(r.getMath()) for r in doc.getModel().getListOfRules()}
    at = {"dose_MK2206": 0.3, "dose_ipatasertib": 0.5, "IC50_MK2206": 0.2, "IC50_ipatasertib": 0.7,
          "h_MK2206": 0.8, "h_ipatasertib": 1.3}

    def value(text):
        expr = sp.sympify(text.replace("^", "**"), locals={"max": sp.Max, **{k: sp.Symbol(k) for k in at}})
        return float(expr.subs({sp.Symbol(k): x for k, x in at.items()}))

    r_mk, r_ipa = (0.3 / 0.2) ** 0.8, (0.5 / 0.7) ** 1.3
    assert formula["theta_ipa"] == "(max(dose_ipatasertib, 0) / IC50_ipatasertib)^h_ipatasertib / " \
                                   "(1 + (max(dose_ipatasertib, 0) / IC50_ipatasertib)^h_ipatasertib)"
    assert value(formula["theta_ipa"]) == pytest.approx(r_ipa / (1 + r_ipa), rel=1e-12)
    assert value(formula["theta_MK"]) == pytest.approx((r_mk + r_ipa) / (1 + r_mk + r_ipa), rel=1e-12)
