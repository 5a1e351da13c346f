"""The scale-marginalised blot likelihood equals the numerical integral over each blot x target log scale."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from pipeline.model import observation


def test_marginal_equals_numerical_integral_over_log_scales():
    rng = np.random.default_rng(0)
    group = np.array([0, 0, 0, 1, 1, 2])
    sigma = np.array([0.2, 0.2, 0.2, 0.1, 0.1, 0.3])
    pred = rng.uniform(0.1, 1.0, 6)
    y = 500 * pred * np.exp(rng.normal(0, 0.2, 6))
    got = float(observation.marginal_log_likelihood(jnp.log(pred), jnp.log(y), jnp.asarray(group),
                                                    jnp.asarray(sigma), 3))
    want = 0.0
    for g in range(3):
        m = group == g

        def density(log_s):  # log-normal density of the y's of group g given its scale, flat prior on log s
            return np.prod(stats.lognorm.pdf(y[m], s=sigma[m], scale=np.exp(log_s) * pred[m]))

        centre = np.mean(np.log(y[m] / pred[m]))
        value, _ = integrate.quad(density, centre - 5, centre + 5, epsabs=0, epsrel=1e-12)
        want += np.log(value)
    assert abs(got - want) < 1e-8


def test_best_log_scale_is_the_mean_log_ratio():
    log_pred = jnp.log(jnp.array([0.5, 0.25, 1.0]))
    log_y = log_pred + jnp.log(jnp.array([100.0, 100.0, 7.0]))
    got = observation.best_log_scales(log_pred, log_y, jnp.array([0, 0, 1]), 2)
    np.testing.assert_allclose(np.asarray(got), np.log([100.0, 7.0]), rtol=1e-14)


def _two_targets(seed, n_bands, noise):
    """Bands of 2 targets on 4 blots (groups of n_bands each) with log-normal noise `noise`."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(4), n_bands)
    target = group % 2
    pred = rng.uniform(0.1, 1.0, group.size)
    y = 300 * pred * np.exp(rng.normal(0, noise, group.size))
    return jnp.log(pred), jnp.log(y), jnp.asarray(group), jnp.asarray(target)


def _one_target(log_pred, log_y, group, target, t):
    """sigma -> the scale-marginalised log-likelihood of target t's bands (its 2 blots) with that sigma, jitted."""
    m = np.asarray(target) == t
    g = jnp.asarray(np.unique(np.asarray(group)[m], return_inverse=True)[1])
    return jax.jit(lambda s: observation.marginal_log_likelihood(log_pred[m], log_y[m], g, jnp.full(int(m.sum()), s), 2))


def test_integrated_sigma_equals_the_numerical_integral_over_sigma():
    """The scale- and sigma-marginalised likelihood against scipy's quad of the scale-marginalised one over each
    target's sigma under its HalfNormal prior; from 2 bands per blot (a skewed sigma posterior) to 30."""
    for seed, n_bands, noise, scale in [(0, 2, 0.2, 0.3), (1, 5, 0.05, 0.3), (2, 30, 0.4, 0.1), (3, 8, 0.15, 1.0)]:
        log_pred, log_y, group, target = _two_targets(seed, n_bands, noise)
        got = float(observation.integrated_sigma_log_likelihood(log_pred, log_y, group, target, 4, 2, scale))
        want = 0.0
        for t in range(2):
            ll = _one_target(log_pred, log_y, group, target, t)

            def log_f(s, ll=ll):
                return float(ll(s)) + stats.halfnorm.logpdf(s, scale=scale)

            peak = max(log_f(s) for s in np.geomspace(1e-3, 5, 400))
            value, _ = integrate.quad(lambda s: np.exp(log_f(s) - peak), 0, 10 * scale + 5, epsabs=0, epsrel=1e-11,
                                      limit=400, points=[noise])
            want += np.log(value) + peak
        assert abs(got - want) < 1e-7, (seed, got, want)


def test_integrated_sigma_gradient_matches_finite_differences():
    log_pred, log_y, group, target = _two_targets(4, 6, 0.2)

    def f(x):
        return observation.integrated_sigma_log_likelihood(x, log_y, group, target, 4, 2, 0.3)

    grad = np.asarray(jax.grad(f)(log_pred))
    direction = np.random.default_rng(5).normal(size=grad.size)
    h = 1e-5
    fd = (float(f(log_pred + h * direction)) - float(f(log_pred - h * direction))) / (2 * h)
    assert abs(grad @ direction - fd) < 1e-6 * max(1.0, abs(fd))


def test_sigma_draws_follow_its_conditional_posterior():
    """The mean and sd of 4000 draws of each target's sigma against the quadrature moments of its conditional."""
    log_pred, log_y, group, target = _two_targets(6, 3, 0.25)
    draws = np.asarray(jax.vmap(lambda k: observation.draw_sigma(k, log_pred, log_y, group, target, 4, 2, 0.3))(
        jax.random.split(jax.random.PRNGKey(0), 4000)))
    for t in range(2):
        ll = _one_target(log_pred, log_y, group, target, t)

        def dens(s, ll=ll):
            return np.exp(float(ll(s)) - 20.0) * stats.halfnorm.pdf(s, scale=0.3)

        z = integrate.quad(dens, 0, 3, limit=200)[0]
        mean = integrate.quad(lambda s: s * dens(s), 0, 3, limit=200)[0] / z
        sd = np.sqrt(integrate.quad(lambda s: s**2 * dens(s), 0, 3, limit=200)[0] / z - mean**2)
        assert abs(draws[:, t].mean() - mean) < 4 * sd / np.sqrt(4000), (t, draws[:, t].mean(), mean)
        assert abs(draws[:, t].std() / sd - 1) < 0.06
