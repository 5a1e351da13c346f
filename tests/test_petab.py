"""PEtab import: published log-likelihoods of the eight bundled problems of the PEtab benchmark collection, and a problem built here (pre-equilibration,
a condition-table species override, per-gel scaling, estimated noise, log-Laplace noise, an assignment rule,
a compartment of size 2) whose log-likelihood is known in closed form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import libsbml
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import cli
from pipeline.petab import problem as petabproblem
from pipeline.problems import InputError

PETAB = Path(__file__).resolve().parents[1] / "data" / "petab"
PUBLISHED = pd.read_csv(PETAB / "references.tsv", sep="\t", index_col="problem")["llh"].to_dict()
# Crauste: our value is -190.96398 at every solver and tolerance tried (Rodas5P to rtol 1e-12, Kvaerno5, scipy BDF
# and DOP853 at rtol 1e-10), 1.24e-3 above the reference, which AMICI computed at rtol = atol = 1e-8 (scipy BDF
# at those tolerances lands 2.5e-4 off too: its likelihood is steep in the pathogen's near blow-up at day 8).
TOLERANCE = {"Crauste_CellSystems2017": 2e-3}


@pytest.mark.parametrize("name", sorted(PUBLISHED))  # all eight take 2-20 s each, compile included
def test_published_log_likelihood(name, capsys):
    """`petab-llh` at default settings reproduces the benchmark collection's reference log-likelihood."""
    assert cli.main(["petab-llh", str(PETAB / name / f"{name}.yaml")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("llh=")
    assert abs(float(last[4:]) - PUBLISHED[name]) < TOLERANCE.get(name, 1e-3)


def test_gradient_through_preequilibration_matches_finite_differences():
    """Weber_BMC2015 (pre-equilibrated, 36 parameters): the gradient's components along random directions
    match central differences. Through the steady-state event's integration it was off by up to 90x
    (a11: 1.65 against -0.0187); `pipeline.model.solver._implicit` gives the implicit-function-theorem gradient."""
    name = "Weber_BMC2015"
    problem = petabproblem.load(PETAB / name / f"{name}.yaml")
    f = jax.jit(lambda x: petabproblem.log_likelihood(problem, x)[0])
    x = np.asarray(problem.x_nominal)
    grad = np.asarray(jax.jit(jax.grad(lambda x: petabproblem.log_likelihood(problem, x)[0]))(x))
    rng, h = np.random.default_rng(0), 1e-5
    for _ in range(3):
        v = rng.standard_normal(len(x))
        fd = (float(f(x + h * v)) - float(f(x - h * v))) / (2 * h)
        assert grad @ v == pytest.approx(fd, rel=1e-2, abs=1e-4)


# ---- a problem with a closed-form log-likelihood ---------------------------------------------------------
FIXED = {"kp": 2.0, "kd": 0.5, "kd2": 0.3, "X_init": 1.5}
# id: (scale, nominal)
ESTIMATED = {"u_high": ("lin", 3.0), "Y_start": ("log", 4.0), "s_gel1": ("log10", 1.7), "s_gel2": ("log", 0.6),
             "sigma_X": ("log10", 0.2)}
U0, U_LOW = 0.2, 1.0
NOISE_Y = 0.1


def _write_sbml(path: Path) -> None:
    doc = libsbml.SBMLDocument(3, 1)
    m = doc.createModel()
    m.setId("toy")
    c = m.createCompartment()
    c.setId("cell"), c.setSize(2.0), c.setConstant(True), c.setSpatialDimensions(3)
    for sid in ("X", "Y"):
        s = m.createSpecies()
        s.setId(sid), s.setCompartment("cell"), s.setInitialConcentration(0.0)
        s.setHasOnlySubstanceUnits(False), s.setBoundaryCondition(False), s.setConstant(False)
    for pid, value, constant in [("kp", 9.0, True), ("kd", 9.0, True), ("kd2", 9.0, True), ("X_init", 9.0, True),
                                 ("u", 0.0, False), ("Ysum", 0.0, False)]:
        p = m.createParameter()  # the SBML values are stale on purpose: the PEtab tables must win
        p.setId(pid), p.setValue(value), p.setConstant(constant)
    a = m.createInitialAssignment()
    a.setSymbol("X"), a.setMath(libsbml.parseL3Formula("X_init"))
    r = m.createAssignmentRule()
    r.setVariable("Ysum"), r.setMath(libsbml.parseL3Formula("2 * Y"))
    for rid, reactant, product, law in [("prod", None, "X", "cell * kp * u"), ("deg", "X", None, "cell * kd * X"),
                                        ("degY", "Y", None, "cell * kd2 * Y")]:
        rx = m.createReaction()
        rx.setId(rid), rx.setReversible(False), rx.setFast(False)
        for species, make in ((reactant, rx.createReactant), (product, rx.createProduct)):
            if species:
                ref = make()
                ref.setSpecies(species), ref.setStoichiometry(1.0), ref.setConstant(True)
        rx.createKineticLaw().setMath(libsbml.parseL3Formula(law))
    assert libsbml.writeSBMLToFile(doc, str(path)) == 1


def _measurements(planted: bool = False) -> pd.DataFrame:
    """The measurement table: random values (a likelihood check), or data drawn from the model at the nominal
    values (a fit that must recover them)."""
    rows = []
    times = [0.0, 0.5, 1.0, 2.0, 4.0]
    rng = np.random.default_rng(3)
    for pre, cond, gel in [("starved", "stim_low", "s_gel1"), ("starved", "stim_high", "s_gel2"),
                           ("", "stim_low", "s_gel2")]:
        for t in times:
            rows.append({"observableId": "obs_X", "preequilibrationConditionId": pre, "simulationConditionId": cond,
                         "measurement": rng.uniform(0.5, 8.0), "time": t, "observableParameters": gel,
                         "noiseParameters": "sigma_X"})
            rows.append({"observableId": "obs_Y", "preequilibrationConditionId": pre, "simulationConditionId": cond,
                         "measurement": rng.uniform(0.5, 8.0), "time": t, "observableParameters": "",
                         "noiseParameters": NOISE_Y})
    table = pd.DataFrame(rows)
    if planted:
        h = _model_values(table, {**FIXED, **{k: v for k, (_, v) in ESTIMATED.items()}})
        x_rows = (table["observableId"] == "obs_X").to_numpy()
        noise = np.where(x_rows, rng.normal(0.0, ESTIMATED["sigma_X"][1], len(table)),
                         rng.laplace(0.0, NOISE_Y, len(table)))
        table["measurement"] = np.where(x_rows, h + noise, h * np.exp(noise))
    return table


def write_problem(folder: Path, planted: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write_sbml(folder / "model.xml")
    pd.DataFrame({"conditionId": ["starved", "stim_low", "stim_high"], "u": [U0, U_LOW, "u_high"],
                  "Y": [np.nan, 2.5, "Y_start"]}).to_csv(folder / "conditions.tsv", sep="\t", index=False)
    pd.DataFrame({"observableId": ["obs_X", "obs_Y"],
                  "observableFormula": ["observableParameter1_obs_X * X", "Ysum"],
                  "noiseFormula": ["noiseParameter1_obs_X", "noiseParameter1_obs_Y"],
                  "observableTransformation": ["lin", "log"], "noiseDistribution": ["normal", "laplace"]}
                 ).to_csv(folder / "observables.tsv", sep="\t", index=False)
    _measurements(planted).to_csv(folder / "measurements.tsv", sep="\t", index=False)
    rows = [{"parameterId": k, "parameterScale": "lin", "lowerBound": 1e-3, "upperBound": 1e3, "nominalValue": v,
             "estimate": 0} for k, v in FIXED.items()]
    rows += [{"parameterId": k, "parameterScale": s, "lowerBound": 1e-2 if k != "u_high" else 0.0,
              "upperBound": 1e2 if k != "u_high" else 20.0, "nominalValue": v, "estimate": 1}
             for k, (s, v) in ESTIMATED.items()]
    pd.DataFrame(rows).to_csv(folder / "parameters.tsv", sep="\t", index=False)
    spec = {"format_version": 1, "parameter_file": "parameters.tsv",
            "problems": [{"sbml_files": ["model.xml"], "condition_files": ["conditions.tsv"],
                          "measurement_files": ["measurements.tsv"], "observable_files": ["observables.tsv"]}]}
    (folder / "problem.yaml").write_text(yaml.safe_dump(spec))
    return folder / "problem.yaml"


def _model_values(table: pd.DataFrame, values: dict[str, float]) -> np.ndarray:
    """The closed form of every row's observable: dX/dt = kp u - kd X (compartment volumes cancel),
    dY/dt = -kd2 Y."""
    kp, kd, kd2 = values["kp"], values["kd"], values["kd2"]
    u = {"stim_low": U_LOW, "stim_high": values["u_high"]}
    y_start = {"stim_low": 2.5, "stim_high": values["Y_start"]}
    h = []
    for _, r in table.iterrows():
        cond, t = r["simulationConditionId"], r["time"]
        x_inf = kp * u[cond] / kd
        x0 = kp * U0 / kd if r["preequilibrationConditionId"] else values["X_init"]
        if r["observableId"] == "obs_X":
            h.append(values[r["observableParameters"]] * (x_inf + (x0 - x_inf) * math.exp(-kd * t)))
        else:
            h.append(2.0 * y_start[cond] * math.exp(-kd2 * t))
    return np.array(h)


def analytic_log_likelihood(values: dict[str, float]) -> float:
    table = _measurements()
    ll = 0.0
    for (_, r), h in zip(table.iterrows(), _model_values(table, values)):
        y = r["measurement"]
        if r["observableId"] == "obs_X":
            sigma = values["sigma_X"]
            ll += -0.5 * math.log(2 * math.pi * sigma**2) - 0.5 * ((y - h) / sigma) ** 2
        else:
            ll += -math.log(2 * NOISE_Y) - abs(math.log(y) - math.log(h)) / NOISE_Y - math.log(y)
    return ll


def _values(x: np.ndarray) -> dict[str, float]:
    out = dict(FIXED)
    for (k, (scale, _)), xi in zip(ESTIMATED.items(), x):
        out[k] = {"lin": xi, "log": math.exp(xi), "log10": 10.0**xi}[scale]
    return out


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return petabproblem.load(write_problem(tmp_path_factory.mktemp("toy")))


def test_toy_problem_matches_its_closed_form(toy):
    assert toy.x_ids == tuple(ESTIMATED)
    assert list(toy.has_preeq) == [True, True, False]
    f = jax.jit(lambda x: petabproblem.log_likelihood(toy, x))
    rng = np.random.default_rng(0)
    for x in [toy.x_nominal, toy.x_nominal + rng.normal(0.0, 0.3, len(toy.x_nominal))]:
        ll, ok = f(x)
        assert bool(ok)
        assert float(ll) == pytest.approx(analytic_log_likelihood(_values(x)), rel=1e-7)


def test_toy_gradient_matches_finite_differences(toy):
    f = lambda x: petabproblem.log_likelihood(toy, x)[0]  # noqa: E731
    x = toy.x_nominal + 0.1
    grad = np.asarray(jax.jit(jax.grad(f))(x))
    f_jit, h = jax.jit(f), 1e-5
    fd = np.array([(float(f_jit(x + h * e)) - float(f_jit(x - h * e))) / (2 * h) for e in np.eye(len(x))])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


def test_bad_tables_are_reported_together(tmp_path, capsys):
    yaml_path = write_problem(tmp_path)
    cond = pd.read_csv(tmp_path / "conditions.tsv", sep="\t")
    cond["not_in_model"] = 1.0
    cond.to_csv(tmp_path / "conditions.tsv", sep="\t", index=False)
    m = pd.read_csv(tmp_path / "measurements.tsv", sep="\t")
    m.loc[3, "observableParameters"] = "s_gel9"
    m.to_csv(tmp_path / "measurements.tsv", sep="\t", index=False)
    with pytest.raises(InputError) as e:
        petabproblem.load(yaml_path)
    text = str(e.value)
    assert "not_in_model" in text and "'s_gel9'" in text and "row 5" in text
    assert cli.main(["petab-llh", str(yaml_path)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err and "s_gel9" in err


def test_fit_of_a_petab_problem_recovers_planted_values(tmp_path, capsys):
    """fit-map and fit on a `petab:` config: the MAP is near the planted values, every posterior median
    within 4 posterior sd of them (5 parameters, one data set: 3 sd failed once by chance, Y_start at 3.2 sd,
    where the MAP agreed with the posterior), chains agree, and the predictive figure plots the posterior's
    own quantiles."""
    import arviz as az

    from pipeline.outputs import figures
    from pipeline.petab import fit as petabfit

    problem = write_problem(tmp_path / "problem", planted=True)
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({"analysis": "toy", "petab": str(problem), "seed": 2,
                                   "solver": {"rtol": 1e-8, "atol": 1e-10}, "map": {"starts": 6, "steps": 40},
                                   "sampler": {"chains": 2, "warmup": 150, "samples": 150, "max_tree_depth": 5,
                                               "chain_method": "sequential"}}))
    out = tmp_path / "results"
    assert cli.main(["fit-map", str(cfg), "--out", str(out / "map.json")]) == 0
    fits = json.loads((out / "map.json").read_text())["fits"]
    truth = {k: v for k, (_, v) in ESTIMATED.items()}
    for k, v in fits[0]["parameters"].items():
        assert abs(math.log(v / truth[k])) < 0.3, (k, v, truth[k])
    assert cli.main(["fit", str(cfg), "--map", str(out / "map.json"), "--posterior", str(out / "posterior.nc"),
                     "--shifts", str(out / "parameters.csv"), "--plot", str(out / "predictive.png"),
                     "--diagnostics", str(out / "diagnostics.json")]) == 0
    idata = az.from_netcdf(out / "posterior.nc")
    for k, v in truth.items():
        draws = idata.posterior[k].values.ravel()
        assert abs(np.median(draws) - v) < 4 * draws.std(), (k, np.median(draws), v)
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["max_rhat"] < 1.1 and diag["solver_failures"] == 0
    assert idata.log_likelihood["y"].shape[-1] == len(_measurements())
    fig = petabfit.plot_predictive(idata)
    line = fig.axes[0].lines[0]  # obs_X, the first condition: its median line
    obs = idata.observed_data["y"]
    rows = np.flatnonzero((obs["observableId"].values == "obs_X") & (obs["simulation"].values == "starved -> stim_low"))
    rows = rows[np.argsort(obs["time"].values[rows], kind="stable")]
    rep = idata.posterior_predictive["y"].stack(sample=("chain", "draw")).values[rows]
    np.testing.assert_allclose(line.get_ydata(), np.median(rep, axis=1))
    assert (out / "predictive.png").stat().st_size > 10_000
    # the report stage on the PEtab fit; its contraction from the prior group: s_gel1 is uniform on log10
    # within [-2, 2] (prior sd 4 / sqrt(12))
    assert cli.main(["report", "toy", "--config", str(cfg), "--results", str(out)]) == 0
    page = (out / "report.html").read_text()
    for heading in ("Dataset", "Parameters", "Posterior predictive against the data", "Can the fit be trusted?",
                    "Sampler", "What the data inform"):
        assert f"<h2>{heading}</h2>" in page, heading
    row = figures.contraction_table(idata.posterior, idata.prior).set_index("parameter").loc["log10 s_gel1"]
    assert row["prior_sd"] == pytest.approx(4 / math.sqrt(12), rel=0.05)
    post_sd = np.log10(idata.posterior["s_gel1"].values.ravel()).std(ddof=1)
    assert row["contraction"] == pytest.approx(1 - (post_sd / row["prior_sd"]) ** 2) and row["contraction"] > 0.9



def test_map_starts_are_uniform_within_the_bounds_or_around_the_nominal_values(toy):
    """map.start_sd: starts drawn around the parameter table's nominal values (that sd apart in u);
    without it, uniform on the parameter scale within the bounds (PEtab's default prior)."""
    from pipeline.petab import fit as petabfit

    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    for start_sd in (None, 0.1):
        m = petabfit.PetabModel(toy, petabproblem.REFERENCE, start_sd)
        x = np.asarray(jax.vmap(lambda k: m.x(m.prior_draw(k)))(keys))
        frac = (x - m.lower) / (m.upper - m.lower)
        assert (frac > 0).all() and (frac < 1).all()
        if start_sd is None:  # uniform: quartiles at 1/4, 1/2, 3/4 of the scaled bounds
            np.testing.assert_allclose(np.quantile(frac, [0.25, 0.5, 0.75], axis=0),
                                       np.tile([[0.25], [0.5], [0.75]], (1, m.dim)), atol=0.03)
        else:  # normal in u around the nominal values' u, with sd start_sd
            nominal = (toy.x_nominal - m.lower) / (m.upper - m.lower)
            u = np.log(frac) - np.log1p(-frac)
            np.testing.assert_allclose(np.mean(u, axis=0), np.log(nominal) - np.log1p(-nominal), atol=0.01)
            np.testing.assert_allclose(np.std(u, axis=0), start_sd, rtol=0.05)


def test_prior_variance_of_u_under_the_default_uniform_prior_is_the_logistic_one(toy):
    """Uniform on the parameter scale within the bounds is a standard logistic u = logit(fraction): variance
    pi^2 / 3 per coordinate (the Laplace reading of what the data inform, pipeline.inference.laplace)."""
    from pipeline.petab import fit as petabfit

    m = petabfit.PetabModel(toy, petabproblem.REFERENCE)
    np.testing.assert_allclose(m.prior_variance(jax.random.PRNGKey(2)), np.pi ** 2 / 3, rtol=0.1)


def test_prior_group_draws_the_parameter_tables_priors_within_the_bounds(toy):
    """The report's `prior` group: PEtab's parameterScaleNormal and parameterScaleLaplace truncated to the
    bounds and the default uniform, each on its parameter scale, against scipy's CDFs (Kolmogorov-Smirnov)."""
    import scipy.stats

    from pipeline.petab import fit as petabfit

    m = petabfit.PetabModel(toy, petabproblem.REFERENCE)
    # u_high (lin, 0..20): normal(3, 5); Y_start (log, ln 0.01..ln 100): laplace(1, 0.5); the rest uniform
    m.prior_kind, m.prior_loc, m.prior_scale = np.array([1, 2, 0, 0, 0]), np.array([3.0, 1.0, 0, 0, 0]), \
        np.array([5.0, 0.5, 1, 1, 1])
    prior = m.prior_group(jax.random.PRNGKey(1), 4000)
    assert prior["u_high"].dims == ("chain", "draw") and list(prior.attrs["parameter_scale"])[:3] == \
        ["lin", "log", "log10"]
    lo, hi = np.log(1e-2), np.log(1e2)
    laplace = scipy.stats.laplace(1.0, 0.5)
    cdfs = {"u_high": (lambda x: x, scipy.stats.truncnorm(-3 / 5, 17 / 5, 3.0, 5.0).cdf),
            "Y_start": (np.log, lambda x: (laplace.cdf(x) - laplace.cdf(lo)) / (laplace.cdf(hi) - laplace.cdf(lo))),
            "s_gel1": (np.log10, scipy.stats.uniform(-2, 4).cdf), "s_gel2": (np.log, scipy.stats.uniform(lo, hi - lo).cdf)}
    for name, (to_scale, cdf) in cdfs.items():
        assert scipy.stats.kstest(to_scale(prior[name].values.ravel()), cdf).pvalue > 1e-3, name
    # an untruncated normal would put 27 % of u_high below its lower bound 0
    assert prior["u_high"].values.min() >= 0.0
