"""Blot observation model (model-spec.md section 5): y = s_{blot,target} * h(x(t)) * exp(eps), eps ~ N(0, sigma_target^2).

The scale s of each blot x target is marginalised analytically on the log scale under a flat
prior on log s. With r_i = log y_i - log h_i for the n_g bands of group g:

    log p(y_g | h, sigma) = -(n_g - 1)/2 log(2 pi sigma^2) - 1/2 log n_g - SS_g / (2 sigma^2) - sum_i log y_i,

where SS_g = sum_i (r_i - mean_g r)^2 (the last term is the log-normal Jacobian, so this is a
density of y itself). The profile (best) log scale of a group is mean_g r.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)  # float64 everywhere (as in pipeline.simulate)


def marginal_log_likelihood(log_pred, log_y, group, sigma, n_groups: int):
    """Sum over groups of the scale-marginalised log-normal log-likelihood.

    log_pred, log_y, sigma: [N] per measurement (sigma is the sigma of its target); group: [N] ints in [0, n_groups).
    """
    r = log_y - log_pred
    n = jax.ops.segment_sum(jnp.ones_like(r), group, n_groups)
    mean = jax.ops.segment_sum(r, group, n_groups) / jnp.maximum(n, 1.0)
    dev = r - mean[group]
    per_band = -0.5 * dev**2 / sigma**2 - 0.5 * jnp.log(2 * jnp.pi * sigma**2) - log_y
    # each group gives back one band's normalisation (the integral over its log scale) and adds -1/2 log n
    sigma_g = jax.ops.segment_max(sigma, group, n_groups)
    per_group = jnp.where(n > 0, 0.5 * jnp.log(2 * jnp.pi * sigma_g**2) - 0.5 * jnp.log(jnp.maximum(n, 1.0)), 0.0)
    return jnp.sum(per_band) + jnp.sum(per_group)


def best_log_scales(log_pred, log_y, group, n_groups: int):
    """The profile (maximum-likelihood) log scale of each group: the mean log residual."""
    r = log_y - log_pred
    n = jax.ops.segment_sum(jnp.ones_like(r), group, n_groups)
    return jax.ops.segment_sum(r, group, n_groups) / jnp.maximum(n, 1.0)


def draw_log_scales(key, log_pred, log_y, group, sigma, n_groups: int):
    """One draw of every group's log scale from its conditional posterior given h and sigma (flat prior on
    log s): Normal(mean_g r, sigma_g^2 / n_g). With the draws of the marginal posterior this gives draws of
    the joint posterior of (parameters, scales)."""
    mean = best_log_scales(log_pred, log_y, group, n_groups)
    n = jnp.maximum(jax.ops.segment_sum(jnp.ones_like(log_y), group, n_groups), 1.0)
    sigma_g = jax.ops.segment_max(sigma, group, n_groups)
    return mean + sigma_g / jnp.sqrt(n) * jax.random.normal(key, mean.shape)
