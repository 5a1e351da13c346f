"""Student-t band noise (`model.noise: student_t`, pipeline.model.observation) against truth: its scale-marginalised
likelihood against scipy.integrate.quad per group, its nu -> infinity limit against the log-normal closed form,
its gradient against finite differences, the scale draws against the quad conditional, and PSIS-LOO (the
`compare` stage) on an exact grid posterior of a toy blot model with and without gross outliers."""

import functools
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from jax.scipy import stats as jstats
from scipy import integrate, stats

from pipeline import config
from pipeline.blots import dataset, design, ingest
from pipeline.model import observation, solver
from pipeline.outputs import compare
from pipeline.model.posterior import Model

NU = 4.0


def _groups(outliers: bool, seed=0):
    """Planted residual groups of 5, 12 and 30 bands (two sigmas), an outlier 10 sigma away in each with `outliers`."""
    rng = np.random.default_rng(seed)
    sizes, sigmas, scales = (5, 12, 30), (0.2, 0.1, 0.3), (0.5, -1.0, 2.0)
    group = np.concatenate([np.full(n, g) for g, n in enumerate(sizes)])
    sigma = np.concatenate([np.full(n, s) for n, s in zip(sizes, sigmas)])
    log_pred = rng.uniform(-2.0, 0.0, group.size)
    eps = stats.t.rvs(NU, scale=sigma, random_state=rng)
    if outliers:
        first = np.searchsorted(group, [0, 1, 2])
        eps[first] = np.array([10.0, -10.0, 10.0]) * sigma[first]
    log_y = log_pred + np.array(scales)[group] + eps
    return log_pred, log_y, group, sigma


def _quad_integrand(r, sigma, df):
    """(log integrand of the group's log scale a, its maximum) for quad, with the Jacobians of y apart."""
    centre = np.median(r)
    top = np.sum(stats.t.logpdf(r - centre, df, scale=sigma))
    return (lambda a: np.exp(np.sum(stats.t.logpdf(r - a, df, scale=sigma)) - top)), top


def _quad_log_integral(r, sigma, df):
    f, top = _quad_integrand(r, sigma, df)
    lo, hi = r.min() - 30 * sigma.max(), r.max() + 30 * sigma.max()
    value = integrate.quad(f, lo, hi, points=np.sort(r), epsabs=0, epsrel=1e-13, limit=1000)[0]
    value += integrate.quad(f, -np.inf, lo, epsabs=0, epsrel=1e-13, limit=200)[0]
    value += integrate.quad(f, hi, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]
    return np.log(value) + top


@pytest.mark.parametrize("outliers", [False, True])
def test_student_t_marginal_equals_quad_per_group(outliers):
    log_pred, log_y, group, sigma = _groups(outliers)
    args = (jnp.asarray(log_pred), jnp.asarray(log_y), jnp.asarray(group), jnp.asarray(sigma), 3)
    got = np.asarray(observation.student_t_log_scale_integrals(*args, NU))
    want = [_quad_log_integral((log_y - log_pred)[group == g], sigma[group == g], NU) for g in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    total = float(observation.student_t_marginal_log_likelihood(*args, NU))
    assert total == pytest.approx(sum(want) - np.sum(log_y), rel=1e-6)


def test_an_empty_group_and_a_single_band():
    """A group of one band integrates to exactly 1 (the t density integrates over its location); an empty group
    adds nothing."""
    log_y = jnp.array([0.3, -2.0])
    got = observation.student_t_log_scale_integrals(jnp.zeros(2), log_y, jnp.array([0, 2]), jnp.array([0.2, 0.1]),
                                                    3, NU)
    np.testing.assert_allclose(np.asarray(got), 0.0, atol=1e-9)


def test_student_t_approaches_the_lognormal_closed_form_as_nu_grows():
    log_pred, log_y, group, sigma = (jnp.asarray(x) for x in _groups(outliers=False))
    exact = float(observation.marginal_log_likelihood(log_pred, log_y, group, sigma, 3))
    gaps = [abs(float(observation.student_t_marginal_log_likelihood(log_pred, log_y, group, sigma, 3, nu)) - exact)
            for nu in (1e3, 1e4, 1e5)]
    assert gaps[2] < 1e-3
    assert gaps[0] / gaps[1] == pytest.approx(10, rel=0.05)  # O(1/nu)
    assert gaps[1] / gaps[2] == pytest.approx(10, rel=0.05)


def test_student_t_gradient_matches_finite_differences():
    log_pred, log_y, group, sigma = _groups(outliers=True)
    target = np.arange(group.size) % 2  # two targets' sigmas, shared across groups

    def f(x):
        pred, log_sigma = x[:-2], x[-2:]
        return observation.student_t_marginal_log_likelihood(pred, jnp.asarray(log_y), jnp.asarray(group),
                                                             jnp.exp(log_sigma)[target], 3, NU)
    x = jnp.concatenate([jnp.asarray(log_pred), jnp.log(jnp.array([0.15, 0.25]))])
    grad = np.asarray(jax.jit(jax.grad(f))(x))
    f = jax.jit(f)
    h = 1e-5
    check = list(range(0, x.size - 2, 5)) + [x.size - 2, x.size - 1]  # every 5th band and both log sigmas
    fd = [(float(f(x.at[i].add(h))) - float(f(x.at[i].add(-h)))) / (2 * h) for i in check]
    np.testing.assert_allclose(grad[check], fd, rtol=1e-6, atol=1e-7)


def test_scale_draws_follow_the_quad_conditional():
    """4000 draws per group against the conditional of its log scale by quad: mean and variance within 4
    Monte-Carlo standard errors, and a KS test against the CDF (cumulative quadrature on a fine grid)."""
    log_pred, log_y, group, sigma = _groups(outliers=True, seed=1)
    n = 4000
    draw = jax.jit(jax.vmap(lambda k: observation.student_t_draw_log_scales(
        k, jnp.asarray(log_pred), jnp.asarray(log_y), jnp.asarray(group), jnp.asarray(sigma), 3, NU)))
    drawn = np.asarray(draw(jax.random.split(jax.random.PRNGKey(0), n)))
    for g in range(3):
        r, s = (log_y - log_pred)[group == g], sigma[group == g]
        f, top = _quad_integrand(r, s, NU)
        lo, hi = np.median(r) - 3.0, np.median(r) + 3.0  # +-10 sigma: beyond it the conditional has no mass to speak of
        z = integrate.quad(f, lo, hi, points=np.sort(r[(r > lo) & (r < hi)]), epsrel=1e-12, limit=500)[0]
        mean = integrate.quad(lambda a: a * f(a), lo, hi, epsrel=1e-12, limit=500)[0] / z
        var = integrate.quad(lambda a: (a - mean) ** 2 * f(a), lo, hi, epsrel=1e-12, limit=500)[0] / z
        x = drawn[:, g]
        assert abs(x.mean() - mean) < 4 * np.sqrt(var / n), g
        assert abs(x.var() / var - 1) < 4 * np.sqrt(2 / n) * 1.5, g  # ~1.5: a slightly heavy-tailed conditional
        grid = np.linspace(lo, hi, 20001)
        density = np.exp(np.sum(stats.t.logpdf(r - grid[:, None], NU, scale=s), axis=1) - top)
        cdf = integrate.cumulative_simpson(density, x=grid, initial=0.0)
        assert stats.kstest(x, lambda a: np.interp(a, grid, cdf / cdf[-1])).pvalue > 1e-3, g


@pytest.mark.parametrize("df", [1.0, 4.0, 30.0])
def test_student_t_draws_follow_the_t_distribution(df):
    x = np.asarray(observation.student_t_draws(jax.random.PRNGKey(2), df, (20000,)))
    assert stats.kstest(x, stats.t(df).cdf).pvalue > 1e-3


# ---- PSIS-LOO on a toy blot model ----------------------------------------------------------------------------
# h(t) = exp(-k t) on 3 blots of 10 times with their own scales; log k ~ N(0, 1), sigma ~ HalfNormal(0.3). The
# posterior of (log k, log sigma) is exact on a grid (scales marginalised by each noise model's function); the
# draws are grid points drawn by posterior weight, the scales drawn from their conditional per draw, and the
# per-band log-likelihood given them goes to the `compare` stage, as for a fitted posterior.nc.

T = np.tile(np.linspace(0.0, 4.0, 10), 3)
BLOT = np.repeat(np.arange(3), 10)
LOG_K = np.linspace(-1.5, 0.5, 61)
LOG_SIGMA = np.linspace(np.log(0.03), np.log(1.5), 61)


@functools.cache
def _toy(name: str):
    """(log posterior on the (log k, log sigma) grid, per-band log-likelihood per draw), compiled once per noise."""
    noise, group = observation.noise_model(name, NU), jnp.asarray(BLOT)

    def log_post(log_y, log_k, log_sigma):
        sigma = jnp.exp(log_sigma) * jnp.ones(T.size)
        prior = jstats.norm.logpdf(log_k) + np.log(2.0) + jstats.norm.logpdf(jnp.exp(log_sigma), 0.0, 0.3) + log_sigma
        return prior + noise.marginal_log_likelihood(-jnp.exp(log_k) * T, log_y, group, sigma, 3)

    def log_lik(log_y, key, log_k, log_sigma):
        log_h, sigma = -jnp.exp(log_k) * T, jnp.exp(log_sigma) * jnp.ones(T.size)
        log_scale = noise.draw_log_scales(key, log_h, log_y, group, sigma, 3)
        return noise.log_likelihood(log_y, log_h + log_scale[group], sigma)
    return (jax.jit(jax.vmap(log_post, in_axes=(None, 0, 0))),
            jax.jit(jax.vmap(log_lik, in_axes=(None, 0, 0, 0))))


def _toy_idata(name: str, log_y, key):
    log_post, log_lik = _toy(name)
    lk, ls = (x.ravel() for x in np.meshgrid(LOG_K, LOG_SIGMA, indexing="ij"))
    lp = np.asarray(log_post(jnp.asarray(log_y), jnp.asarray(lk), jnp.asarray(ls)))
    w = np.exp(lp - lp.max())
    k_pick, k_obs = jax.random.split(key)
    pick = np.asarray(jax.random.choice(k_pick, lk.size, (2000,), p=jnp.asarray(w / w.sum())))
    ll = np.asarray(log_lik(jnp.asarray(log_y), jax.random.split(k_obs, pick.size), jnp.asarray(lk[pick]),
                            jnp.asarray(ls[pick])))
    return az.from_dict(posterior={"log_k": lk[pick][None], "log_sigma": ls[pick][None]},
                        log_likelihood={"y": ll[None]}, observed_data={"y": np.exp(log_y)})


@pytest.mark.parametrize("outliers", [False, True])
def test_psis_loo_prefers_student_t_where_bands_are_outlying(outliers):
    rng = np.random.default_rng(7)
    log_y = np.array([0.5, -1.0, 2.0])[BLOT] - 0.5 * T + rng.normal(0.0, 0.15, T.size)
    if outliers:
        log_y[[3, 14, 26]] += [1.5, -1.5, 1.5]  # three gross outliers, 10 sigma
    key = jax.random.PRNGKey(0)
    table = compare.compare({name: _toy_idata(name, log_y, key) for name in observation.NOISES})
    rows = table.set_index("variant")
    if outliers:
        assert table["variant"].iloc[0] == "student_t"
        assert rows.loc["lognormal", "elpd_diff"] > 2 * rows.loc["lognormal", "dse"]
    else:
        loser = table["variant"].iloc[1]
        assert rows.loc[loser, "elpd_diff"] < 2 * rows.loc[loser, "dse"]


# ---- wiring: the config's `model.noise` chooses the functions of posterior.Model --------------------------------

ONE_SHIFT = Path(__file__).parent / "data" / "one_shift"


class _Flat(Model):
    """posterior.Model with model values 0.5 exp(u_0) in place of the ODE (nothing to compile)."""

    def predictions(self, u):
        return 0.5 * jnp.exp(u[0]) * jnp.ones(self.log_y.shape), True


def test_model_takes_the_noise_of_the_config_and_of_a_variant(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"analysis": "c", "dataset": str(ONE_SHIFT),
                                    "model": {"estimate": ["kd_T"], "shift_mechanisms": ["pten_loss"]},
                                    "variants": [{"name": "robust", "model": {"noise": "student_t"}}]}))
    base = config.load(path)
    assert (base["model"]["noise"], base["model"]["noise_df"]) == ("lognormal", 4)
    robust = config.variant(base, "robust")
    the_design = design.from_dataset(ingest.to_xarray(dataset.load(ONE_SHIFT)))
    m_n, m_t = (_Flat(c, the_design, solver.SolverSettings()) for c in (base, robust))
    u = 0.3 * jax.random.normal(jax.random.PRNGKey(0), (m_t.dim,))
    log_h = jnp.log(m_t.predictions(u)[0])
    sigma = m_t.sigma(u)[m_t.band_target]
    args = (log_h, m_t.log_y, the_design.group, sigma, len(the_design.groups))
    want_t = jax.jit(observation.student_t_marginal_log_likelihood, static_argnums=4)(*args, NU)
    assert float(jax.jit(m_t.log_likelihood)(u)[0]) == pytest.approx(float(want_t), rel=1e-12)
    want_n = observation.marginal_log_likelihood(*args)
    assert float(m_n.log_likelihood(u)[0]) == pytest.approx(float(want_n), rel=1e-12)
    out = jax.jit(m_t.observe)(u, jax.random.PRNGKey(1))
    mean = log_h + out["log_scale"][the_design.group]
    want = stats.t.logpdf(np.asarray(m_t.log_y - mean), NU, scale=np.asarray(sigma)) - np.asarray(m_t.log_y)
    np.testing.assert_allclose(np.asarray(out["log_lik"]), want, rtol=1e-10)
    assert out["y_rep"].shape == m_t.log_y.shape and np.all(np.asarray(out["y_rep"]) > 0)
