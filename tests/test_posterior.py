"""The statistical model (pipeline.model.posterior) against independent numpyro densities, and the MAP and NUTS
machinery (pipeline.inference.optimize, pipeline.inference.mcmc) on an analytic stand-in for the ODE, so that forced
solver failures can be placed exactly and nothing here waits on an ODE compile."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import yaml

from pipeline import config, fit
from pipeline.blots import dataset, design, ingest
from pipeline.model import parameters, solver
from pipeline.inference import engine, mcmc, optimize
from pipeline.model.posterior import LN10, Model

ONE_SHIFT = Path(__file__).parent / "data" / "one_shift"


def _config(tmp_path, **over):
    raw = {"analysis": "t", "dataset": str(ONE_SHIFT),
           "model": {"estimate": ["kd_T", "IC50_MK2206", "c_T"],
                     "shift_mechanisms": ["akt_allosteric_binding", "pim_parallel_kinase", "pten_loss"]}}
    for k, val in over.items():
        raw[k] = {**raw.get(k, {}), **val}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return config.load(path)


def _model(cfg, cls=Model):
    return cls(cfg, design.from_dataset(ingest.to_xarray(dataset.load(ONE_SHIFT))), solver.SolverSettings())


SUMMED = ["akt_allosteric_binding", "mtorc1_hyperactivation"]  # b_M1 and k_T0 estimated: sampled as sum and share


@pytest.mark.parametrize("shift_prior,mechanisms", [("laplace", None), ("horseshoe", None), ("laplace", SUMMED)])
def test_log_prior_matches_numpyro_densities(tmp_path, shift_prior, mechanisms):
    cfg = _config(tmp_path, prior={"shift": shift_prior, "offset": True},
                  **({"model": {"shift_mechanisms": mechanisms}} if mechanisms else {}))
    m = _model(cfg)
    u = jax.random.normal(jax.random.PRNGKey(0), (m.dim,)) * 0.8
    table = parameters.table()
    theta = np.asarray(m.estimates(u))
    n_est = len(m.estimated)
    jac = jax.jacfwd(lambda v: m.estimates(jnp.asarray(u).at[:n_est].set(v)))(jnp.asarray(u[:n_est]))
    expected = np.linalg.slogdet(np.asarray(jac))[1]  # density of theta times |det d theta / d u|, by autodiff
    for i, name in enumerate(m.estimated):
        row = table.loc[name]
        if row["prior"] == "beta":
            expected += dist.Beta(row["beta_a"], row["beta_b"]).log_prob(theta[i])
        else:
            expected += dist.LogNormal(np.log(row["value"]), row["sigma_log10"] * LN10).log_prob(theta[i])
    n_shift = len(m.shifted_lines) * len(m.shift_params)
    w = np.asarray(u[len(m.estimated):len(m.estimated) + n_shift])
    if shift_prior == "laplace":
        b = cfg["prior"]["shift_scale"]
        expected += np.sum(dist.Laplace(0.0, b).log_prob(b * w)) + n_shift * np.log(b)
    else:
        log_lam = np.asarray(u[m._slices["log_lambda"]])
        log_tau = np.asarray(u[m._slices["log_tau"]])
        expected += np.sum(dist.Normal().log_prob(w))
        expected += np.sum(dist.HalfCauchy(1.0).log_prob(np.exp(log_lam)) + log_lam)
        expected += np.sum(dist.HalfCauchy(cfg["prior"]["horseshoe_global_scale"]).log_prob(np.exp(log_tau)) + log_tau)
    for part, scale in (("log_sigma", "sigma_scale"), ("log_offset", "offset_scale")):
        x = np.asarray(u[m._slices[part]])
        expected += np.sum(dist.HalfNormal(cfg["prior"][scale]).log_prob(np.exp(x)) + x)
    assert float(m.log_prior(u)) == pytest.approx(float(expected), rel=1e-10, abs=1e-10)
    assert len(m.coords) == m.dim


def test_summed_inputs_are_sampled_as_sum_and_share(tmp_path):
    """b_M1 + k_T0 / k_Td is one coordinate, the share another; the prior is the summands' own, independent."""
    m = _model(_config(tmp_path, model={"shift_mechanisms": SUMMED}))
    assert "b_M1" not in m.coords and "k_T0" not in m.coords
    i_sum, i_share = m.coords.index("sum:b_M1+k_T0/k_Td"), m.coords.index("share:b_M1")
    b, k = m.estimated.index("b_M1"), m.estimated.index("k_T0")
    total = lambda u: float(m.estimates(u)[b] + m.estimates(u)[k] / 1.0)  # noqa: E731  (k_Td = 1 in the table)
    u = jax.random.normal(jax.random.PRNGKey(3), (m.dim,))
    along_share = [total(u.at[i_share].set(x)) for x in (-2.0, 0.0, 3.0)]
    np.testing.assert_allclose(along_share, along_share[0], rtol=1e-12)
    assert total(u.at[i_sum].add(0.5)) / total(u) == pytest.approx(np.exp(0.5 * np.sqrt(LN10 * LN10)), rel=1e-12)
    z = jax.random.normal(jax.random.PRNGKey(4), (len(m.estimated),)) * 2.0
    np.testing.assert_allclose(m._standard(jnp.asarray(u).at[:len(z)].set(m._from_standard(z))), z, atol=1e-12)
    draws = jax.vmap(lambda key: m.estimates(m.prior_draw(key)))(jax.random.split(jax.random.PRNGKey(5), 4000))
    zb = (np.log(np.asarray(draws[:, b])) - np.log(0.01)) / LN10  # sigma_log10 1.0 for both
    zk = (np.log(np.asarray(draws[:, k])) - np.log(0.02)) / LN10
    for zz in (zb, zk):  # N(0, 1): 4000 draws give the mean to +-0.016 (1 sd), the sd to +-0.011
        assert abs(zz.mean()) < 0.07 and abs(zz.std() - 1.0) < 0.05
    assert abs(np.corrcoef(zb, zk)[0, 1]) < 0.07


@pytest.mark.parametrize("mechanisms", [None, SUMMED])
def test_log_prior_gradient_matches_finite_differences(tmp_path, mechanisms):
    m = _model(_config(tmp_path, prior={"shift": "horseshoe"},
                       **({"model": {"shift_mechanisms": mechanisms}} if mechanisms else {})))
    u = jax.random.normal(jax.random.PRNGKey(1), (m.dim,)) * 0.5
    g = np.asarray(jax.grad(m.log_prior)(u))
    h = 1e-6
    fd = np.array([(m.log_prior(u.at[i].add(h)) - m.log_prior(u.at[i].add(-h))) / (2 * h) for i in range(m.dim)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)


def test_shifts_act_on_their_own_line_only(tmp_path):
    cfg = _config(tmp_path)
    m = _model(cfg)
    names = parameters.names()
    u = np.zeros(m.dim)
    k = {p: i for i, (_, p) in enumerate(m.shift_params)}
    start = len(m.estimated) + len(m.shift_params)  # the second shifted line's coordinates
    u[start + k["IC50_MK2206"]] = 2.0  # Laplace coordinate: delta = 0.5 * 2 = 1
    u[start + k["phi_b"]] = 4.0  # a fraction: logit shift of 2
    values = np.asarray(m.line_values(jnp.asarray(u)))
    ref, other, res = values
    assert m.lines == ("parental", "identical", "resistant")
    np.testing.assert_array_equal(other, ref)
    assert ref[names.index("IC50_MK2206")] == pytest.approx(0.2)  # u = 0: the prior median
    assert res[names.index("IC50_MK2206")] == pytest.approx(0.2 * np.e)
    logit = lambda x: np.log(x / (1 - x))  # noqa: E731
    assert logit(res[names.index("phi_b")]) - logit(ref[names.index("phi_b")]) == pytest.approx(2.0)
    assert res[names.index("X")] == ref[names.index("X")]
    changed = np.flatnonzero(~np.isclose(ref, res))
    assert {names[i] for i in changed} == {"IC50_MK2206", "phi_b"}
    q = m.named(jnp.asarray(u))
    assert float(q["log2_fc"][1, k["IC50_MK2206"]]) == pytest.approx(1 / np.log(2))
    assert not np.any(np.asarray(q["log2_fc"][0]))


def test_loops_off_parameters_do_not_shift(tmp_path):
    cfg = _config(tmp_path, model={"loops_off": ["foxo_rtk"], "shift_mechanisms": ["foxo_rtk_feedback", "pten_loss"]})
    m = _model(cfg)
    assert "g_F" not in [p for _, p in m.shift_params]


FAIL_ABOVE = -2.0


class Analytic(Model):
    """The same priors and observation model with an analytic 'simulation' in place of the ODE: the band value
    decays with time at a rate set by its line's kd_T and IC50_MK2206; evaluation fails where logit c_T
    (coordinate 2, which the data do not inform) exceeds FAIL_ABOVE: a stand-in for a solver failure in one
    region of parameter space, where ~40 % of its prior mass lies."""

    def predictions(self, u):
        values = self.line_values(u)
        names = parameters.names()
        line = np.asarray(self.design.conditions.line)[self.design.cond_index]
        t = jnp.asarray(self.design.times)[self.design.cond_index, self.design.time_index]
        rate = values[line, names.index("kd_T")] * 0.01 + values[line, names.index("IC50_MK2206")] * 0.05
        h = jnp.exp(-rate * t) * (1.0 + self.band_target)
        return h, u[2] < FAIL_ABOVE


def test_integrated_sigma_is_the_integral_of_the_sampled_sigma_density(tmp_path):
    """prior.integrate_sigma: the log density without log_sigma coordinates equals the integral of the one with
    them over every target's log sigma (separable: the sum of 1-D integrals, less (T - 1) times the density at the
    point they are taken around), at 3 random points; the model's sigma draws are exact conditionals (finite)."""
    from scipy import integrate

    sampled = _model(_config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]}), Analytic)
    integrated = _model(_config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]},
                                prior={"integrate_sigma": True}), Analytic)
    t = len(sampled.targets)
    assert integrated.dim == sampled.dim - t and not any(c.startswith("log_sigma") for c in integrated.coords)
    lp_sampled = jax.jit(lambda u: sampled.log_density(u)[0])
    lp_integrated = jax.jit(lambda u: integrated.log_density(u)[0])
    at = sampled._slices["log_sigma"]
    for k in range(3):
        u = np.asarray(sampled.prior_draw(jax.random.PRNGKey(k))).copy()
        u[2] = min(u[2], FAIL_ABOVE - 1.0)
        u0 = float(lp_sampled(u))
        total = -(t - 1) * u0
        for i in range(at.start, at.stop):
            def f(x, i=i):
                v = u.copy()
                v[i] = x
                return float(lp_sampled(v))
            peak = max(f(x) for x in np.linspace(-8, 2, 201))
            total += peak + np.log(integrate.quad(lambda x: np.exp(f(x) - peak), -12, 4, limit=200, epsrel=1e-10)[0])
        want = total
        got = float(lp_integrated(np.delete(u, np.arange(at.start, at.stop))))
        assert abs(got - want) < 1e-6 * max(1.0, abs(want)), (k, got, want)
    drawn = integrated.observe(jnp.zeros(integrated.dim), jax.random.PRNGKey(0))["sigma"]
    assert drawn.shape == (t,) and np.all(np.isfinite(np.asarray(drawn))) and np.all(np.asarray(drawn) > 0)


class AnalyticBlot(fit.BlotModel):
    """The blot model of the fit stage with Analytic's predictions: the engine's whole path without an ODE."""
    predictions = Analytic.predictions


def test_integrated_and_sampled_sigma_give_the_same_posterior_through_the_engine(tmp_path):
    """NUTS, InferenceData (posterior, prior group) through `inference.engine` for both sigma models: the
    integrated model's exact sigma draws and its parameters agree with sampling sigma (means within 4 Monte
    Carlo standard errors), and the outputs are laid out alike."""
    import arviz as az

    ds = ingest.to_xarray(dataset.load(ONE_SHIFT))
    post = {}
    for integrate in (False, True):
        cfg = _config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]},
                      prior={"integrate_sigma": integrate},
                      sampler={"chains": 2, "warmup": 200, "samples": 200, "progress": False,
                               "chain_method": "sequential", "mass_init": "identity"})
        m = AnalyticBlot(cfg, ds)
        start = np.zeros(m.dim)
        start[2] = FAIL_ABOVE - 1.0  # (MAP fits are tested above: a start and the identity mass matrix will do)
        map_result = {"coords": list(m.coords), "fits": [{"log_posterior": 0.0, "u": start.tolist()}]}
        idata, diag = engine.posterior(m, cfg, map_result, log=lambda s: None)
        assert idata.posterior["sigma"].shape == (2, 200, len(m.targets))
        assert idata.prior["sigma"].shape == (1, engine.PRIOR_DRAWS, len(m.targets))
        assert diag["solver_failures"] >= 0 and diag["chains"] == 2
        post[integrate] = idata.posterior
    for name in ["sigma", "kd_T", "IC50_MK2206", "log2_fc"]:
        a, b = post[False][name], post[True][name]
        se = np.sqrt(az.mcse(a.to_dataset(name="x"))["x"].values ** 2 + az.mcse(b.to_dataset(name="x"))["x"].values ** 2)
        diff = np.abs(a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values)
        assert np.all(diff < 4 * se + 1e-12), (name, diff, se)


def test_failed_starts_are_dropped_and_counted(tmp_path):
    cfg = _config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]})
    m = _model(cfg, Analytic)
    result = optimize.run(m, jax.random.PRNGKey(0), 16, 60, 1e-4, log=lambda s: None)
    status = np.array(result.status)
    u0 = result.u0
    assert np.array_equal(status == optimize.FAILED_START, u0[:, 2] >= FAIL_ABOVE)
    assert 0 < np.sum(status == optimize.FAILED_START) < 16
    ok = status != optimize.FAILED_START
    assert np.all(np.isfinite(result.objective[ok])) and np.all(np.isinf(result.objective[~ok]))
    assert np.all(result.u[ok, 2] < FAIL_ABOVE)  # no fit walked into the failing region
    assert list(result.objective[result.order][:ok.sum()]) == sorted(result.objective[ok])
    # all converge, also those whose shift ends at the Laplace kink, but for starts pressed against the failing region
    assert np.all((status[ok] == optimize.CONVERGED) | (np.abs(result.u[ok, 2] - FAIL_ABOVE) < 0.01))
    assert np.sum(status == optimize.CONVERGED) >= 8


class NeverFails(Analytic):
    def predictions(self, u):
        return super().predictions(u)[0], True


def test_map_reaches_the_optimum_at_the_laplace_kink(tmp_path):
    """Orthant-wise L-BFGS against scipy's L-BFGS-B on the smooth split form of the same posterior
    (w = p - n with p, n >= 0, |w| = p + n at the optimum): same optimum, and the shift the data do not
    inform (PIM: the analytic model has none) is exactly zero, not zigzagging around it."""
    import scipy.optimize
    cfg = _config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding", "pim_parallel_kinase"]})
    m = _model(cfg, NeverFails)
    result = optimize.run(m, jax.random.PRNGKey(1), 8, 100, 1e-6, log=lambda s: None)
    best = result.u[result.order[0]]
    assert result.status[result.order[0]] == optimize.CONVERGED
    kink = m.kink_mask
    assert [c for c, k in zip(m.coords, kink) if k] == [f"shift:{line}:{p}" for line in ("identical", "resistant")
                                                        for p in ("IC50_MK2206", "X")]
    assert best[m.coords.index("shift:resistant:X")] == 0.0 and best[m.coords.index("shift:identical:X")] == 0.0
    n = int(kink.sum())

    def split_objective(x):
        u = x[:m.dim].at[kink].set(x[m.dim:m.dim + n] - x[m.dim + n:])
        lp, _ = m.log_density(u)
        return -lp - jnp.sum(jnp.abs(u[kink])) + jnp.sum(x[m.dim:])  # the kink terms as p + n
    fg = jax.jit(jax.value_and_grad(split_objective))
    x0 = np.concatenate([np.where(kink, 0.0, best), np.zeros(2 * n)])
    bounds = [(None, None)] * m.dim + [(0, None)] * (2 * n)
    ref = scipy.optimize.minimize(lambda x: tuple(map(np.asarray, fg(x))), x0, jac=True, method="L-BFGS-B",
                            bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000})
    u_ref = np.where(kink, 0.0, ref.x[:m.dim])
    u_ref[kink] = ref.x[m.dim:m.dim + n] - ref.x[m.dim + n:]
    assert result.objective[result.order[0]] == pytest.approx(ref.fun, abs=1e-6)
    np.testing.assert_allclose(best, u_ref, atol=1e-3)


def _analytic(cfg):
    """The `Analytic` model of a config: what a `processes` worker builds (a module-level function)."""
    return _model(cfg, Analytic)


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized", "processes"])
def test_solver_failures_in_nuts_are_rejected_and_counted(tmp_path, chain_method):
    cfg = _config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]},
                  sampler={"chains": 2, "warmup": 150, "samples": 150, "progress": False, "chain_method": chain_method})
    m = _model(cfg, Analytic)
    inits = np.zeros((2, m.dim))
    inits[:, 2] = FAIL_ABOVE - 1.0
    key = jax.random.PRNGKey(2)
    if chain_method == "processes":  # each chain in a worker process draws exactly what it draws in sequence
        draws = mcmc.run_in_processes(_analytic, (cfg,), cfg["sampler"], None, key, inits)
        in_sequence = mcmc.Sampler(m, {**cfg["sampler"], "chain_method": "sequential"}).run(key, inits)
        np.testing.assert_array_equal(draws.u, in_sequence.u)
        np.testing.assert_array_equal(draws.failures, in_sequence.failures)
    else:
        draws = mcmc.Sampler(m, cfg["sampler"]).run(key, inits)
    assert draws.u.shape == (2, 150, m.dim)
    assert np.all(draws.u[..., 2] < FAIL_ABOVE)  # a failed proposal is never accepted
    assert np.all(draws.failures > 0) and np.all(draws.failures_warmup > 0)  # proposals went there, and counted
    assert draws.stats["diverging"].sum() >= 0 and np.all(np.isfinite(draws.u))


def test_same_seed_same_draws_other_seed_other_draws(tmp_path):
    cfg = _config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]},
                  sampler={"chains": 2, "warmup": 30, "samples": 20, "progress": False, "chain_method": "sequential"})
    m = _model(cfg, Analytic)
    sampler = mcmc.Sampler(m, cfg["sampler"])
    inits = np.zeros((2, m.dim))
    inits[:, 2] = FAIL_ABOVE - 1.0
    a = sampler.run(jax.random.PRNGKey(4), inits).u
    b = sampler.run(jax.random.PRNGKey(4), inits).u
    c = sampler.run(jax.random.PRNGKey(5), inits).u
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("adapt", [False, True])
def test_adapt_mass_false_keeps_the_starting_mass_matrix(tmp_path, adapt):
    cfg = _config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]},
                  sampler={"chains": 1, "warmup": 60, "samples": 5, "progress": False, "dense_mass": False,
                           "adapt_mass": adapt})
    m = _model(cfg, Analytic)
    start = np.linspace(0.5, 2.0, m.dim)
    sampler = mcmc.Sampler(m, cfg["sampler"], inverse_mass_matrix=start)
    inits = np.zeros((1, m.dim))
    inits[:, 2] = FAIL_ABOVE - 1.0
    sampler.run(jax.random.PRNGKey(0), inits)
    after = np.asarray(sampler.mcmc.last_state.adapt_state.inverse_mass_matrix[(mcmc.SITE,)])
    assert np.allclose(after, start) != adapt


class Correlated:
    """N(0, C) in 6 dimensions, sds 0.3 to 10 and correlations up to 0.95: with the identity as mass matrix NUTS
    needs long trajectories, with C short ones."""
    dim, log_y = 6, jnp.zeros(1)
    sd = np.array([0.3, 1.0, 3.0, 10.0, 3.0, 1.0])
    corr = np.eye(6)
    corr[0, 1] = corr[1, 0] = 0.95
    corr[2, 3] = corr[3, 2] = -0.8
    cov = corr * np.outer(sd, sd)
    precision = jnp.asarray(np.linalg.inv(cov))

    def log_density(self, u, log_y=None):
        return -0.5 * u @ self.precision @ u, jnp.array(True)


def test_pilot_mass_is_the_draws_covariance_and_stays_positive_definite():
    """pilot_mass: with 6 draws per dimension of a correlated 20-dimensional Gaussian its condition number
    relative to the truth (what sets NUTS's step size and trajectory length) is that of the plain covariance
    (within 10 %) and below 8, where the diagonal alone gives over 20; with many draws it is the covariance;
    a coordinate that never moved keeps a positive variance."""
    rng = np.random.default_rng(0)
    d = 20
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.1 * np.eye(d)
    chol = np.linalg.cholesky(cov)

    def condition(m):
        rel = np.linalg.eigvalsh(np.linalg.solve(chol, np.linalg.solve(chol, m).T))
        return rel.max() / rel.min()

    u = rng.normal(size=(6 * d, d)) @ chol.T
    plain = np.cov(u, rowvar=False)
    assert condition(mcmc.pilot_mass(u)) < min(8.0, 1.1 * condition(plain))
    assert condition(np.diag(np.diag(plain))) > 20
    big = rng.normal(size=(40000, d)) @ chol.T
    np.testing.assert_allclose(mcmc.pilot_mass(big), cov, atol=0.05 * np.abs(cov).max())
    stuck = u.copy()
    stuck[:, 3] = 1.0
    assert np.all(np.linalg.eigvalsh(mcmc.pilot_mass(stuck)) > 0)


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
def test_pilot_mass_matrix_is_the_posterior_covariance(chain_method):
    """mass_init pilot from the identity on a correlated, badly scaled Gaussian: at the end of warmup each
    chain's inverse mass matrix is within a factor 4 of the covariance in every direction (the identity is off
    by up to 200), NUTS then takes a
    fifth of the leapfrog steps it takes with the identity kept, its draws have the right means and sds, and
    the pilot's gradients count in warmup."""
    import arviz as az

    m = Correlated()
    base = {"chains": 2, "warmup": 200, "samples": 300, "target_accept": 0.8, "max_tree_depth": 8,
            "dense_mass": True, "adapt_mass": False, "chain_method": chain_method, "progress": True,
            "checkpoint_every": 0}
    inits = np.zeros((2, m.dim))
    runs = {}
    for init in ("hessian", "pilot"):
        sampler = mcmc.Sampler(m, {**base, "mass_init": init, "pilot_window": [0.3, 0.8]}, np.eye(m.dim))
        runs[init] = sampler.run(jax.random.PRNGKey(1), inits)
    state = sampler.mcmc.last_state.adapt_state.inverse_mass_matrix[(mcmc.SITE,)]
    chol = np.linalg.cholesky(m.cov)
    for inv in np.asarray(state).reshape(-1, m.dim, m.dim):
        rel = np.linalg.eigvalsh(np.linalg.solve(chol, np.linalg.solve(chol, inv).T))
        assert 1 / 4 < rel.min() and rel.max() < 4, rel
    steps = {k: r.stats["num_steps"].mean() for k, r in runs.items()}
    assert steps["pilot"] < steps["hessian"] / 5, steps
    draws = runs["pilot"]
    assert draws.warmup_steps.sum() > 0 and np.all(draws.warmup_steps > 0.5 * base["warmup"])
    for k in range(m.dim):
        x = draws.u[..., k]
        assert abs(x.mean()) < 4 * az.mcse(x), (k, x.mean())
        assert abs(x.std() - m.sd[k]) < 4 * az.mcse(x, method="sd"), (k, x.std(), m.sd[k])


def test_a_pilot_window_without_warmup_after_it_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pilot_window"):
        mcmc.pilot_window({"mass_init": "pilot", "pilot_window": [0.5, 1.0]}, 100)
    assert mcmc.pilot_window({"mass_init": "hessian", "pilot_window": [0.5, 1.0]}, 100) is None
    assert mcmc.pilot_window({"mass_init": "pilot", "pilot_window": [0.3, 0.8]}, 200) == (60, 160)
    assert mcmc.chunk_length(200, 500, (60, 160), None, True) == 20
    assert mcmc.chunk_length(200, 500, None, 100, True) == 100 and mcmc.chunk_length(200, 500, None, 0, False) == 0
    assert mcmc.chunk_length(333, 500, None, None, True) == 0  # (gcd 1: a run per phase, not 833 runs)


class RarelyFails(AnalyticBlot):
    """AnalyticBlot whose 'solves' fail only in the posterior's tail (c_T's coordinate above 0), as an ODE's do."""
    def predictions(self, u):
        return Analytic.predictions(self, u)[0], u[2] < 0.0


def test_chees_agrees_with_nuts_and_counts_failures_without_a_callback(tmp_path):
    """ChEES-HMC (16 chains in lockstep, whitened by the MAP's Laplace approximation) through the engine, MAP
    included, against NUTS on the same posterior: means and sds agree within Monte Carlo error, no accepted
    draw lies where solves fail, the failed proposals are counted in the kernel's state (no host callback),
    and the same seed gives the same draws."""
    import arviz as az

    cfg = _config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]}, map={"starts": 4, "steps": 100},
                  sampler={"method": "chees", "chains": 16, "warmup": 200, "samples": 250, "progress": False,
                           "adapt_mass": False, "target_accept": 0.8})
    m = RarelyFails(cfg, ingest.to_xarray(dataset.load(ONE_SHIFT)))
    map_result = engine.map_fits(m, cfg, describe=lambda u: {}, log=lambda s: None)
    idata, diag = engine.posterior(m, cfg, map_result, log=lambda s: None)
    assert diag["chains"] == 16 and diag["max_rhat"] < 1.03 and diag["min_ess_bulk"] > 400
    failed = diag["solver_failures"] + sum(diag["solver_failures_warmup_per_chain"])
    assert failed > 0 and diag["divergences"] >= diag["solver_failures"]  # a failed end state: divergent, rejected
    draws = engine.sample(m, cfg, map_result, log=lambda s: None)  # the same seed again: the same draws
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, -draws.stats["potential_energy"])
    assert np.all(np.isfinite(draws.stats["energy"])) and np.all(az.bfmi(draws.stats["energy"]) > 0.3)
    u = draws.u.reshape(-1, m.dim)
    assert np.all(u[:, 2] < 0.0) and np.all(np.isfinite(u))

    nuts = mcmc.Sampler(m, {**cfg["sampler"], "method": "nuts", "chains": 2, "warmup": 200, "samples": 400,
                            "chain_method": "sequential", "target_accept": 0.9, "progress": True}).run(
        jax.random.PRNGKey(7), np.tile(map_result["fits"][0]["u"], (2, 1)))
    for k in range(m.dim):
        a, b = draws.u[..., k], nuts.u[..., k]
        se_mean = np.hypot(az.mcse(a), az.mcse(b))
        se_sd = np.hypot(az.mcse(a, method="sd"), az.mcse(b, method="sd"))
        assert abs(a.mean() - b.mean()) < 4 * se_mean, (m.coords[k], a.mean(), b.mean(), se_mean)
        assert abs(a.std() - b.std()) < 4 * se_sd, (m.coords[k], a.std(), b.std(), se_sd)


def test_auto_sampler_and_chain_method_follow_the_device(monkeypatch):
    cfg = {"chain_method": "auto", "chains": 4}
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(mcmc.os, "cpu_count", lambda: 2)
    assert mcmc.chain_method(cfg) == "processes"
    assert mcmc.chain_method({**cfg, "chains": 1}) == "sequential"
    assert mcmc.chain_method({**cfg, "chain_method": "vectorized"}) == "vectorized"  # an explicit choice stays
    monkeypatch.setattr(mcmc.os, "cpu_count", lambda: 1)
    assert mcmc.chain_method(cfg) == "sequential"
    assert engine.method({"method": "auto", "chains": 4}) == "nuts"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert mcmc.chain_method(cfg) == "vectorized"
    assert engine.method({"method": "auto", "chains": 4}) == "chees"
    assert engine.method({"method": "auto", "chains": 1}) == "nuts"  # (ChEES pools 2 or more chains)
    assert engine.method({"method": "auto", "chains": 4, "mass_init": "pilot"}) == "nuts"  # (a NUTS warmup)
    assert engine.method({"method": "nuts", "chains": 4}) == "nuts"  # an explicit choice stays


def test_hessian_and_inverse_mass_on_a_quadratic():
    a = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 0.01]])

    class Quadratic:
        class model:
            log_y = None

            @staticmethod
            def kink_gradient(u):
                return np.zeros(np.shape(u))
        value_and_grad = staticmethod(jax.jit(jax.vmap(
            lambda u, _: jax.value_and_grad(lambda x: 0.5 * x @ jnp.asarray(a) @ x)(u), in_axes=(0, None))))

    hess = optimize.hessian(Quadratic, np.array([0.3, -0.2, 1.0]), batch=4)
    np.testing.assert_allclose(hess, a, atol=1e-6)
    inv = optimize.inverse_mass(hess)
    vals = np.linalg.eigvalsh(inv)
    assert np.all(vals > 0) and np.max(vals) <= 1.0 + 1e-12  # the flat direction is held at the prior scale
    assert np.allclose(optimize.inverse_mass(np.full((2, 2), np.nan)), np.eye(2))


def test_hessian_leaves_out_the_laplace_kink(tmp_path):
    """At a shift of exactly zero (where MAP fits of unshifted mechanisms land) the finite-difference Hessian
    is the smooth part's: the same as just beside the kink, not ~1/step."""
    cfg = _config(tmp_path, model={"shift_mechanisms": ["akt_allosteric_binding"]})
    m = _model(cfg, Analytic)
    opt = optimize.Optimizer(m)
    u = np.zeros(m.dim)
    u[2] = FAIL_ABOVE - 1.0
    k = len(m.estimated)  # the shift coordinate
    at_kink = optimize.hessian(opt, u, batch=4)
    u[k] = 0.05
    beside = optimize.hessian(opt, u, batch=4)
    assert abs(at_kink[k, k]) < 100 and at_kink[k, k] == pytest.approx(beside[k, k], rel=0.05, abs=1e-3)


SHARDED_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)  # as the pipeline's model modules do
from pipeline.inference import mcmc

class Gaussian:  # the model interface's log density: N(y, diag(1, 4, 9)); a failed 'solve' where u[0] > 2.5
    dim, log_y = 3, jnp.array([0.0, 1.0, -1.0])
    def log_density(self, u, log_y):
        return -0.5 * jnp.sum((u - log_y) ** 2 / jnp.array([1.0, 4.0, 9.0])), u[0] < 2.5

cfg = {"chains": 4, "warmup": 100, "samples": 200, "target_accept": 0.8, "max_tree_depth": 6, "dense_mass": False,
       "adapt_mass": True, "chain_method": "vectorized", "progress": False}
assert len(jax.devices()) == 2
out = {}
for name, devices in (("two", jax.local_devices()), ("one", jax.local_devices()[:1])):
    s = mcmc.Sampler(Gaussian(), cfg)
    s.devices = devices
    keys, inits = mcmc.placed(jax.random.split(jax.random.PRNGKey(0), 4), jnp.zeros((4, 3)), devices=devices)
    out[name] = (s.run(jax.random.PRNGKey(0), np.zeros((4, 3))), len(keys.sharding.device_set))
two, one = out["two"], out["one"]
assert two[1] == 2 and one[1] == 1, (two[1], one[1])
np.testing.assert_allclose(two[0].u, one[0].u, rtol=0, atol=1e-6)  # round-off in the adaptation: ~3e-8
assert two[0].failures.sum() == one[0].failures.sum() > 0  # (per chain, the devices' call order mixes them)
u = two[0].u.reshape(-1, 3)
assert np.all(np.abs(u.mean(0) - [0.0, 1.0, -1.0]) < 4 * np.array([1.0, 2.0, 3.0]) / np.sqrt(200)), u.mean(0)
from pipeline.inference import chees  # ChEES's chains, sharded over both devices
d = chees.run(Gaussian(), {**cfg, "chains": 8, "adapt_mass": False}, np.array([1.0, 4.0, 9.0]), jax.random.PRNGKey(1),
              np.zeros((8, 3)))
u = d.u.reshape(-1, 3)
assert u[:, 0].max() < 2.5 and d.failures.sum() + d.failures_warmup.sum() > 0
assert np.all(np.abs(u.mean(0) - [0.0, 1.0, -1.0]) < 4 * np.array([1.0, 2.0, 3.0]) / np.sqrt(400)), u.mean(0)
print("ok")
"""


def test_vectorized_chains_shard_over_several_devices():
    """4 vectorized chains on 2 (forced host) devices: the starting points and keys are placed over both, and the
    draws and the failure count are those of one device (to round-off), from the right distribution; ChEES's
    chains, sharded over both, too."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
