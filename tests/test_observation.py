"""The scale-marginalised blot likelihood equals the numerical integral over each blot x target log scale."""

import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from pipeline import observation


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
