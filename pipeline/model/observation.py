"""Blot observation model (model-spec.md section 5): y = s_{blot,target} * h(x(t)) * exp(eps), eps ~ N(0, sigma_target^2).

The scale s of each blot x target is marginalised analytically on the log scale under a flat
prior on log s. With r_i = log y_i - log h_i for the n_g bands of group g:

    log p(y_g | h, sigma) = -(n_g - 1)/2 log(2 pi sigma^2) - 1/2 log n_g - SS_g / (2 sigma^2) - sum_i log y_i,

where SS_g = sum_i (r_i - mean_g r)^2 (the last term is the log-normal Jacobian, so this is a
density of y itself). The profile (best) log scale of a group is mean_g r.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import stats

from pipeline import runtime

runtime.configure()  # float64 everywhere (see pipeline.runtime)

NOISES = ("lognormal", "student_t")  # `model.noise` in the config
_TINY = 1e-300  # floor of a denominator (an empty group)


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


# ---- Student-t noise: eps ~ t(nu, 0, sigma) on log y (model-spec.md section 5) --------------------------
#
# The scale integral of a group, int prod_i t(r_i - a; nu, sigma_i) da over its log scale a, has no closed
# form. It is one-dimensional per group, so it is done by quadrature: a = c_g + b_g tan(pi s / 2) maps the
# whole line onto s in (-1, 1), where N_NODES Gauss-Legendre nodes integrate it (the integrand's polynomial
# tails become a smooth (1 - s)^(n (nu + 1) - 2) there, so nothing beyond a finite window is lost). The nodes
# sit at the group's mode c_g (EM steps of the t location from the mean residual, so that an outlier does not
# pull them off the bulk of the bands) with b_g = WIDTH / sqrt(sum_i w_i / sigma_i^2), WIDTH times the width
# of the mode (w_i: the EM weights), wide enough for a second mode at outliers in a small group. c_g and b_g
# are held out of the gradient (the integral does not depend on them), so the gradient is the same quadrature
# of the integrand's derivative. Measured against scipy.integrate.quad (tests/test_noise.py): error < 1e-13
# on groups of 5-30 bands with an outlier 5-15 sigma away (nu = 4); up to 1e-5 on groups of 1-4 bands with
# several such outliers (nu 1-10), where the integrand has well-separated modes.

N_NODES = 128  # Gauss-Legendre nodes per group
WIDTH = 4.0  # node spread in widths of the mode
N_GRID = 1024  # cells of the inverse-CDF grid of the scale draws
EM_STEPS = 30  # EM steps to the mode of each group's log-scale integrand
_S, _W = np.polynomial.legendre.leggauss(N_NODES)
_X = np.tan(np.pi * _S / 2)
_LOG_W = np.log(_W) + np.log(np.pi / 2) + np.log1p(_X**2)  # node weights times da/ds (b_g apart)
_S_GRID = -1.0 + (np.arange(N_GRID) + 0.5) * 2.0 / N_GRID  # cell midpoints on (-1, 1)
_X_GRID = np.tan(np.pi * _S_GRID / 2)
_LOG_DX_GRID = np.log(np.pi / 2) + np.log1p(_X_GRID**2) + np.log(2.0 / N_GRID)


def _t_nodes(r, group, sigma, n_groups: int, df):
    """(centre c_g, width b_g, n_g) of every group's quadrature, outside the gradient."""
    r, sigma = jax.lax.stop_gradient(r), jax.lax.stop_gradient(sigma)
    prec = 1.0 / sigma**2
    n = jax.ops.segment_sum(jnp.ones_like(r), group, n_groups)
    total = jnp.maximum(jax.ops.segment_sum(prec, group, n_groups), _TINY)
    centre = jax.ops.segment_sum(r * prec, group, n_groups) / total

    def weights(c):
        return (df + 1) / (df + (r - c[group]) ** 2 * prec) * prec

    def em(_, c):
        w = weights(c)
        return jax.ops.segment_sum(w * r, group, n_groups) / jnp.maximum(jax.ops.segment_sum(w, group, n_groups), _TINY)

    centre = jax.lax.fori_loop(0, EM_STEPS, em, centre)
    width = WIDTH / jnp.sqrt(jnp.maximum(jax.ops.segment_sum(weights(centre), group, n_groups), _TINY))
    return centre, width, n


def _t_log_integrand(r, group, sigma, n_groups: int, df, a):
    """log prod_{i in g} t(r_i - a_g; df, sigma_i) for a: [G, K] log scales, -> [G, K]."""
    per_band = stats.t.logpdf(r[:, None] - a[group], df, scale=sigma[:, None])
    return jax.ops.segment_sum(per_band, group, n_groups)


def student_t_marginal_log_likelihood(log_pred, log_y, group, sigma, n_groups: int, df):
    """Sum over groups of the scale-marginalised log-likelihood under Student-t(df) noise on log y (flat prior on
    log s, by quadrature: see above); a density of y (the Jacobian -sum log y included), like
    `marginal_log_likelihood`. Arguments as there, df: the degrees of freedom nu."""
    return jnp.sum(student_t_log_scale_integrals(log_pred, log_y, group, sigma, n_groups, df)) - jnp.sum(log_y)


def student_t_log_scale_integrals(log_pred, log_y, group, sigma, n_groups: int, df):
    """[G]: log int prod_{i in g} t(log y_i - log_pred_i - a; df, sigma_i) da of every group (0 for an empty one)."""
    r = log_y - log_pred
    centre, width, n = _t_nodes(r, group, sigma, n_groups, df)
    a = centre[:, None] + width[:, None] * _X
    per_group = jax.nn.logsumexp(_t_log_integrand(r, group, sigma, n_groups, df, a) + _LOG_W, axis=1) + jnp.log(width)
    return jnp.where(n > 0, per_group, 0.0)


def student_t_draw_log_scales(key, log_pred, log_y, group, sigma, n_groups: int, df):
    """One draw of every group's log scale from its exact conditional given h and sigma under Student-t noise,
    by inverse CDF on the quadrature's map (`_grid_draw`)."""
    r = log_y - log_pred
    centre, width, _ = _t_nodes(r, group, sigma, n_groups, df)
    return _grid_draw(key, centre, width, lambda a: _t_log_integrand(r, group, sigma, n_groups, df, a))


def _grid_draw(key, centre, width, log_density):
    """One draw per row of a 1-D density by inverse CDF on N_GRID cells of the tan map a = centre + width
    tan(pi s / 2) (uniform in s, so fine at the mode and covering the tails; the density constant within a
    cell). log_density(a) gives [rows, N_GRID] for a: [rows, N_GRID], up to a constant per row."""
    log_p = log_density(centre[:, None] + width[:, None] * jnp.asarray(_X_GRID)) + _LOG_DX_GRID
    p = jnp.exp(log_p - jnp.max(log_p, axis=1, keepdims=True))
    cdf = jnp.cumsum(p, axis=1)
    u = jax.random.uniform(key, centre.shape) * cdf[:, -1]
    cell = jnp.minimum(jnp.sum(cdf < u[:, None], axis=1), N_GRID - 1)  # the first cell whose CDF reaches u
    below = jnp.take_along_axis(cdf, cell[:, None], axis=1)[:, 0] - jnp.take_along_axis(p, cell[:, None], axis=1)[:, 0]
    frac = (u - below) / jnp.take_along_axis(p, cell[:, None], axis=1)[:, 0]
    s = -1.0 + (cell + jnp.clip(frac, 0.0, 1.0)) * 2.0 / N_GRID
    return centre + width * jnp.tan(jnp.pi * s / 2)


def student_t_draws(key, df, shape):
    """Standard Student-t(df) draws by Bailey's polar method (Math. Comp. 62, 1994) with the point of the unit
    disk drawn directly (radius^2 W ~ U(0, 1), angle theta): t = cos(theta) sqrt(df (W^(-2/df) - 1)). Exact and
    loop-free: jax.random.t goes through the gamma sampler, whose rejection loop takes seconds to compile."""
    k_w, k_theta = jax.random.split(key)
    w = jax.random.uniform(k_w, shape, minval=jnp.finfo(float).tiny)
    theta = jax.random.uniform(k_theta, shape, maxval=2 * jnp.pi)
    return jnp.cos(theta) * jnp.sqrt(df * jnp.expm1(-2.0 / df * jnp.log(w)))


# ---- log-normal noise with each target's sigma integrated out (`prior.integrate_sigma`) ----------------
#
# After the scales, a target's bands enter the likelihood only through m_t = sum_g (n_g - 1) and the pooled
# SS_t = sum_g SS_g: L_t(sigma) = -m_t/2 log(2 pi sigma^2) - SS_t / (2 sigma^2). With the HalfNormal(scale) prior
# on sigma, the integral over l = log sigma of exp(f(l)), f(l) = -(m_t - 1) l - SS_t e^(-2l) / 2 - e^(2l) / (2 scale^2)
# (+ constants, the Jacobian d sigma = sigma dl included), is one-dimensional per target and smooth. Its mode has a
# closed form (v = e^(2l) solves v^2 / scale^2 + (m_t - 1) v - SS_t = 0) and its width -1/f''; the integral is the
# same tan-mapped Gauss-Legendre quadrature as the Student-t scales (above), nodes held out of the gradient.
# Exact draws of sigma given the model values: inverse CDF on the same grid (`draw_sigma`), then the scales given
# sigma (`draw_log_scales`): a draw of the joint posterior (Raimundez et al. 2020 marginalise noise parameters so).


LOG_SIGMA_BOUND = 30.0


def _sigma_stats(log_pred, log_y, group, band_target, n_groups: int, n_targets: int):
    """(m_t, SS_t, n_g): every target's residual degrees of freedom and pooled within-group sum of squares, and
    every group's band count."""
    r = log_y - log_pred
    n = jax.ops.segment_sum(jnp.ones_like(r), group, n_groups)
    mean = jax.ops.segment_sum(r, group, n_groups) / jnp.maximum(n, 1.0)
    ss = jax.ops.segment_sum((r - mean[group]) ** 2, band_target, n_targets)
    m = jax.ops.segment_sum(jnp.ones_like(r), band_target, n_targets) - jax.ops.segment_sum(
        (n > 0).astype(r.dtype), jax.ops.segment_max(band_target, group, n_groups).clip(0), n_targets)
    return m, ss, n


def _sigma_log_integrand(log_sigma, m, ss, scale):
    """f(l) [T, K] for l = log sigma [T, K]: the likelihood's sigma terms, the HalfNormal prior, the Jacobian.
    The far nodes of the tan map are held within |l| <= 30, where f is already -1e25 or less (so that e^(-2l)
    stays finite and their zero weight keeps the gradient finite)."""
    m, ss, log_sigma = m[:, None], ss[:, None], jnp.clip(log_sigma, -LOG_SIGMA_BOUND, LOG_SIGMA_BOUND)
    return (-m * (log_sigma + 0.5 * math.log(2 * math.pi)) - 0.5 * ss * jnp.exp(-2 * log_sigma)
            + math.log(2.0) + stats.norm.logpdf(jnp.exp(log_sigma), 0.0, scale) + log_sigma)


def _sigma_nodes(m, ss, scale):
    """(centre, width) of every target's quadrature in log sigma: the mode of f and WIDTH / sqrt(-f'')."""
    m, ss = jax.lax.stop_gradient(m), jax.lax.stop_gradient(ss)
    k = m - 1.0
    v = 2 * ss / (k + jnp.sqrt(k**2 + 4 * ss / scale**2))
    v = jnp.where(ss > 0, v, scale**2 * jnp.maximum(-k, 1.0))  # no spread at all: the prior's own mode
    return 0.5 * jnp.log(v), WIDTH / jnp.sqrt(2 * ss / v + 2 * v / scale**2)


def integrated_sigma_log_likelihood(log_pred, log_y, group, band_target, n_groups: int, n_targets: int, scale):
    """log p(y | h) of log-normal bands with every blot scale (flat prior on log s) and every target's sigma
    (HalfNormal(scale) prior) integrated out; a density of y, like `marginal_log_likelihood`.
    band_target: [N] ints in [0, n_targets), the target of each band."""
    m, ss, n = _sigma_stats(log_pred, log_y, group, band_target, n_groups, n_targets)
    centre, width = _sigma_nodes(m, ss, scale)
    log_i = jax.nn.logsumexp(_sigma_log_integrand(centre[:, None] + width[:, None] * _X, m, ss, scale) + _LOG_W,
                             axis=1) + jnp.log(width)
    return jnp.sum(log_i) - 0.5 * jnp.sum(jnp.log(jnp.maximum(n, 1.0))) - jnp.sum(log_y)


def draw_sigma(key, log_pred, log_y, group, band_target, n_groups: int, n_targets: int, scale):
    """One draw of every target's sigma [T] from its exact conditional given h (scales integrated out), by
    inverse CDF on the quadrature's map (`_grid_draw`)."""
    m, ss, _ = _sigma_stats(log_pred, log_y, group, band_target, n_groups, n_targets)
    centre, width = _sigma_nodes(m, ss, scale)
    return jnp.exp(_grid_draw(key, centre, width, lambda log_sigma: _sigma_log_integrand(log_sigma, m, ss, scale)))


# ---- the noise model of a config ----------------------------------------------------------------------


def lognormal_log_likelihood(log_y, mean, sigma):
    """log density of each band y given its log mean (model and scale) under log-normal noise [N]."""
    return stats.norm.logpdf(log_y, mean, sigma) - log_y


def student_t_log_likelihood(log_y, mean, sigma, df):
    """log density of each band y given its log mean under Student-t(df) noise on log y [N]."""
    return stats.t.logpdf(log_y, df, loc=mean, scale=sigma) - log_y


class Noise(NamedTuple):
    """The functions of one band-noise model (`model.noise`; `noise_df` bound), all with the signatures of the
    log-normal ones: marginal_log_likelihood(log_pred, log_y, group, sigma, n_groups),
    draw_log_scales(key, log_pred, log_y, group, sigma, n_groups), log_likelihood(log_y, mean, sigma) per band,
    draw_log_y(key, mean, sigma): a replicate of log y."""
    marginal_log_likelihood: Callable
    draw_log_scales: Callable
    log_likelihood: Callable
    draw_log_y: Callable


def noise_model(name: str, df: float = 4.0) -> Noise:
    """The `Noise` of `model.noise` (one of NOISES) with `model.noise_df` degrees of freedom (Student-t only)."""
    if name == "lognormal":
        return Noise(marginal_log_likelihood, draw_log_scales, lognormal_log_likelihood,
                     lambda key, mean, sigma: mean + sigma * jax.random.normal(key, jnp.shape(mean)))
    if name == "student_t":
        df = float(df)
        return Noise(functools.partial(student_t_marginal_log_likelihood, df=df),
                     functools.partial(student_t_draw_log_scales, df=df),
                     functools.partial(student_t_log_likelihood, df=df),
                     lambda key, mean, sigma: mean + sigma * student_t_draws(key, df, jnp.shape(mean)))
    raise ValueError(f"unknown noise model {name!r}: one of {', '.join(NOISES)}")
