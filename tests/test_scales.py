"""The blot-scale choice: marginalising the scales analytically (pipeline.model.observation) and drawing them
afterwards from their conditional gives the same joint posterior as sampling them with NUTS.

A small case without an ODE: h(t) = exp(-k t) on 3 blots with their own scales, k and sigma unknown.
Both posteriors are sampled with numpyro NUTS; their means and standard deviations must agree to
within Monte-Carlo error (tolerances ~4 standard errors at these ESS).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from pipeline.model import observation

T = jnp.array([0.0, 0.5, 1.0, 2.0, 4.0] * 3)
GROUP = jnp.repeat(jnp.arange(3), 5)
TRUE_LOG_SCALE = jnp.array([0.5, -1.0, 2.0])


def _data():
    key = jax.random.PRNGKey(3)
    return jnp.exp(TRUE_LOG_SCALE[GROUP] - 0.7 * T + 0.2 * jax.random.normal(key, T.shape))


def _priors():
    log_k = numpyro.sample("log_k", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.3))
    return log_k, sigma


def marginal(log_y):
    log_k, sigma = _priors()
    log_h = -jnp.exp(log_k) * T
    numpyro.factor("y", observation.marginal_log_likelihood(log_h, log_y, GROUP, sigma * jnp.ones_like(T), 3))


def sampled(log_y):
    log_k, sigma = _priors()
    log_s = numpyro.sample("log_s", dist.ImproperUniform(dist.constraints.real_vector, (), (3,)))
    # the density of y itself (log-normal), like the marginal one
    numpyro.factor("y", jnp.sum(dist.Normal(-jnp.exp(log_k) * T + log_s[GROUP], sigma).log_prob(log_y) - log_y))


def _run(model, log_y, seed, init=None):
    mcmc = MCMC(NUTS(model, init_strategy=numpyro.infer.init_to_value(values=init) if init else
                     numpyro.infer.init_to_median), num_warmup=500, num_samples=3000, num_chains=2,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), log_y)
    return {k: np.asarray(x) for k, x in mcmc.get_samples().items()}


def test_marginalised_scales_give_the_sampled_scales_posterior():
    log_y = jnp.log(_data())
    a = _run(marginal, log_y, 0)
    b = _run(sampled, log_y, 1, init={"log_k": 0.0, "sigma": 0.2, "log_s": jnp.zeros(3)})
    for name in ("log_k", "sigma"):
        se = np.sqrt(np.var(a[name]) / 600 + np.var(b[name]) / 600)  # ESS >~ 600 of 6000 draws
        assert abs(np.mean(a[name]) - np.mean(b[name])) < 4 * se, name
        assert abs(np.std(a[name]) / np.std(b[name]) - 1) < 0.15, name
    # scales drawn from their conditional after the marginal fit match the sampled scales
    keys = jax.random.split(jax.random.PRNGKey(5), len(a["log_k"]))
    draw = jax.vmap(lambda key, lk, s: observation.draw_log_scales(
        key, -jnp.exp(lk) * T, log_y, GROUP, s * jnp.ones_like(T), 3))
    drawn = np.asarray(draw(keys, jnp.asarray(a["log_k"]), jnp.asarray(a["sigma"])))
    for g in range(3):
        se = np.sqrt(np.var(drawn[:, g]) / 600 + np.var(b["log_s"][:, g]) / 600)
        assert abs(np.mean(drawn[:, g]) - np.mean(b["log_s"][:, g])) < 4 * se
        assert abs(np.std(drawn[:, g]) / np.std(b["log_s"][:, g]) - 1) < 0.15
