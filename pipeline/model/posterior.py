"""The statistical model of a fit, as a log density on one flat unconstrained vector `u`.

Coordinates of `u` (names in `Model.coords`, in this order):

- `<parameter>`: each estimated kinetic parameter of the reference line (`variant.estimated`: the
  config's set, every parameter a mechanism may shift, the Hill slopes of drugs given at two or more
  doses; all shared by the lines except through the shifts), non-centred: for a
  log-normal prior, log theta = log(median) + sigma_log10 * ln(10) * u (so u ~ N(0, 1) a priori);
  for a Beta prior (fractions), u = logit(theta).
- `sum:<x>+<y>/<d>` and `share:<x>` in place of `<x>` and `<y>`, for each input the network adds
  (`network.SUMMED_INPUTS`: mTORC1 takes b_M1 + k_T0 / k_Td) whose summands are both estimated log-normals: with
  a = log x and b = log(y / d) (d at the variant's value, a constant here), the log sum logaddexp(a, b) and the
  log ratio a - b, each centred at the prior medians' and divided by sqrt(sigma_x sigma_y) (the two priors' sd of
  log). The blots inform the sum, not each summand; in (log x, log y) the posterior is an L-shaped ridge that no
  mass matrix fits, in (sum, share) a band along the share. The change has Jacobian determinant 1, so the
  prior and the posterior are the same as in the summands' own coordinates (`_standard`).
- `shift:<line>:<parameter>`: the mechanism shifts of each non-reference line (model-spec.md
  section 4). The line's value is theta * exp(delta) (a fraction: logit theta + delta), delta in
  natural-log units. Laplace prior: delta = b * u, u ~ Laplace(0, 1). Regularised horseshoe
  (Piironen & Vehtari 2017, slab fixed): delta = tau * lambda~ * u with u ~ N(0, 1), plus
  coordinates `log_lambda:<line>:<parameter>` and `log_tau:<line>`.
- `log_sigma:<target>`: the band noise of each target on log y (HalfNormal prior on sigma): the standard
  deviation of log-normal noise, or the scale of Student-t noise with `model.noise: student_t`. With
  `prior.integrate_sigma` (log-normal noise) there are none: each target's sigma is integrated out with the
  scales (`observation.integrated_sigma_log_likelihood`) and drawn exactly per posterior draw in `observe`.
- `log_offset:<target>` with `prior.offset: true`: y = s * (h + c) (HalfNormal prior on c).

Blot scales (one per blot x target) are integrated out (pipeline.model.observation: analytically under log-normal
noise, by quadrature under Student-t), so
NUTS moves in fewer, better-conditioned dimensions; for each posterior draw they are then drawn
exactly from their conditional posterior (`observe`), which gives the same joint posterior as
sampling them (tests/test_posterior.py checks this on a small case), a log-likelihood per band for
PSIS-LOO and the posterior predictive.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from jax.scipy import stats

from pipeline.blots import design as design_mod
from pipeline.model import network, observation, parameters, simulate, solver, variant
from pipeline.vocabulary import TARGETS

LN10 = math.log(10.0)
TINY = 1e-12  # floor of a model value before its log (solver round-off can make it slightly negative)


class Model:
    """Priors, shifts and the blot likelihood of one analysis; every method is a pure JAX function of `u`."""

    def __init__(self, config: dict, design: design_mod.Design, settings: solver.SolverSettings):
        table, names = parameters.table(), parameters.names()
        prior = config["prior"]
        self.design, self.settings = design, settings
        self.lines = design.lines
        values = variant.values(config)
        self.base = jnp.asarray(parameters.as_array(values))
        self.estimated = variant.estimated(config, design.conditions.doses_uM)
        self.est_index = np.array([names.index(n) for n in self.estimated], dtype=int)
        self.est_beta = np.array([parameters.is_fraction(n) for n in self.estimated], dtype=bool)
        t = table.loc[list(self.estimated)] if self.estimated else table.iloc[:0]
        self.est_loc = np.log(t["value"].to_numpy(float)) if len(t) else np.zeros(0)
        self.est_scale = (t["sigma_log10"].fillna(1.0).to_numpy(float) * LN10) if len(t) else np.zeros(0)
        self.beta_a = t["beta_a"].fillna(1.0).to_numpy(float) if len(t) else np.zeros(0)
        self.beta_b = t["beta_b"].fillna(1.0).to_numpy(float) if len(t) else np.zeros(0)
        # log B(a, b) from scipy: jax.scipy.special.betaln is off by 8e-8 at (2, 18) (c_T, phi_b)
        self.log_beta_norm = scipy.special.betaln(self.beta_a, self.beta_b)
        self._sums = self._summed_inputs(values)

        self.shift_params = variant.shiftable(config)
        self.shift_index = np.array([names.index(p) for _, p in self.shift_params], dtype=int)
        self.shift_beta = np.array([parameters.is_fraction(p) for _, p in self.shift_params], dtype=bool)
        self.shifted_lines = self.lines[1:]
        self.shift_prior = prior["shift"]
        self.laplace_scale = prior["shift_scale"]
        self.tau_scale, self.slab = prior["horseshoe_global_scale"], prior["horseshoe_slab_scale"]

        self.targets = tuple(dict.fromkeys(TARGETS[i] for i in design.target_index))  # those in the dataset
        self.band_target = np.array([self.targets.index(TARGETS[i]) for i in design.target_index], dtype=int)
        self.sigma_scale = prior["sigma_scale"]
        self.integrate_sigma = prior["integrate_sigma"]  # no log_sigma coordinates: sigma is drawn in `observe`
        self.offset, self.offset_scale = prior["offset"], prior["offset_scale"]
        self.log_y = jnp.log(jnp.asarray(design.y))
        self.noise = observation.noise_model(config["model"]["noise"], config["model"]["noise_df"])  # its functions

        k, lines = len(self.shift_params), self.shifted_lines
        shift_names = [f"shift:{line}:{p}" for line in lines for _, p in self.shift_params]
        coords = list(self.estimated)
        for (x, y, d), i, j in zip(self._sums["names"], self._sums["i"], self._sums["j"]):
            coords[i], coords[j] = f"sum:{x}+{y}/{d}", f"share:{x}"
        coords += shift_names
        if self.shift_prior == "horseshoe":
            coords += [f"log_lambda:{line}:{p}" for line in lines for _, p in self.shift_params]
            coords += [f"log_tau:{line}" for line in lines]
        if not self.integrate_sigma:
            coords += [f"log_sigma:{t}" for t in self.targets]
        if self.offset:
            coords += [f"log_offset:{t}" for t in self.targets]
        self.coords = tuple(coords)
        n_est, n_shift = len(self.estimated), len(lines) * k
        self._slices = {"est": slice(0, n_est), "shift": slice(n_est, n_est + n_shift)}
        at = n_est + n_shift
        if self.shift_prior == "horseshoe":
            self._slices["log_lambda"] = slice(at, at + n_shift)
            self._slices["log_tau"] = slice(at + n_shift, at + n_shift + len(lines))
            at += n_shift + len(lines)
        if not self.integrate_sigma:
            self._slices["log_sigma"] = slice(at, at + len(self.targets))
            at += len(self.targets)
        if self.offset:
            self._slices["log_offset"] = slice(at, at + len(self.targets))
            at += len(self.targets)
        self.dim = at

    def _summed_inputs(self, values) -> dict:
        """Index arrays and constants of the summed inputs sampled as sum and share (module docstring)."""
        found = [(x, y, d) for x, y, d in network.SUMMED_INPUTS
                 if x in self.estimated and y in self.estimated and not parameters.is_fraction(x)
                 and not parameters.is_fraction(y) and 0.0 < values[d] < math.inf]
        i = np.array([self.estimated.index(x) for x, _, _ in found], dtype=int)
        j = np.array([self.estimated.index(y) for _, y, _ in found], dtype=int)
        a0 = self.est_loc[i]  # log x at its prior median
        b0 = self.est_loc[j] - np.log([values[d] for _, _, d in found])  # log(y / d) at y's prior median
        return {"names": found, "i": i, "j": j, "a0": a0, "b0": b0, "sa": self.est_scale[i], "sb": self.est_scale[j],
                "s": np.sqrt(self.est_scale[i] * self.est_scale[j]), "sum0": np.logaddexp(a0, b0), "ratio0": a0 - b0}

    def _standard(self, u):
        """u's estimated block as each parameter's standard coordinate z (log theta = loc + scale * z; logit theta
        for fractions): the summed inputs' sum and share turned back into their summands'."""
        w, c = jnp.asarray(self._part(u, "est")), self._sums
        if not len(c["i"]):
            return w
        log_sum = c["sum0"] + c["s"] * w[c["i"]]
        ratio = c["ratio0"] + c["s"] * w[c["j"]]
        a, b = log_sum - jax.nn.softplus(-ratio), log_sum - jax.nn.softplus(ratio)  # a - b = ratio
        return w.at[c["i"]].set((a - c["a0"]) / c["sa"]).at[c["j"]].set((b - c["b0"]) / c["sb"])

    def _from_standard(self, z):
        """The inverse of `_standard`: standard coordinates of the estimated parameters -> u's estimated block."""
        z, c = jnp.asarray(z), self._sums
        if not len(c["i"]):
            return z
        a, b = c["a0"] + c["sa"] * z[c["i"]], c["b0"] + c["sb"] * z[c["j"]]
        return z.at[c["i"]].set((jnp.logaddexp(a, b) - c["sum0"]) / c["s"]).at[c["j"]].set((a - b - c["ratio0"]) / c["s"])

    # ---- named pieces of u -------------------------------------------------------------------------
    def _part(self, u, name):
        return u[self._slices[name]]

    def estimates(self, u):
        """The estimated parameters' natural values, [n_est]."""
        z = self._standard(u)
        return jnp.where(self.est_beta, jax.nn.sigmoid(z), jnp.exp(self.est_loc + self.est_scale * z))

    def shifts(self, u):
        """delta, [lines-1, k]: natural-log (fractions: logit) shift of each mechanism parameter per non-reference line."""
        k = len(self.shift_params)
        w = self._part(u, "shift").reshape(len(self.shifted_lines), k)
        if self.shift_prior == "laplace":
            return self.laplace_scale * w
        lam = jnp.exp(self._part(u, "log_lambda").reshape(len(self.shifted_lines), k))
        tau = jnp.exp(self._part(u, "log_tau"))[:, None]
        lam_tilde = jnp.sqrt(self.slab**2 * lam**2 / (self.slab**2 + tau**2 * lam**2))
        return tau * lam_tilde * w

    def sigma(self, u):
        return jnp.exp(self._part(u, "log_sigma"))

    def offsets(self, u):
        return jnp.exp(self._part(u, "log_offset")) if self.offset else jnp.zeros(len(self.targets))

    def line_values(self, u):
        """Natural parameter vectors of every cell line, [lines, P] (reference first)."""
        return self.values_of(self.estimates(u), self.shifts(u))

    def values_of(self, estimates, delta):
        """`line_values` from the reported quantities of one draw (the posterior group's estimated parameters
        and `shift`), [lines, P]: how a stage after the fit (`pipeline.decide`) rebuilds each line's parameters."""
        ref = self.base.at[self.est_index].set(estimates)
        if not self.shift_params:
            return jnp.tile(ref, (len(self.lines), 1))
        old = ref[self.shift_index]
        logit = jnp.log(old) - jnp.log1p(-jnp.where(self.shift_beta, old, 0.0))
        shifted = jnp.where(self.shift_beta, jax.nn.sigmoid(logit + delta), old * jnp.exp(delta))
        rows = [ref] + [ref.at[self.shift_index].set(shifted[i]) for i in range(len(self.shifted_lines))]
        return jnp.stack(rows)

    # ---- densities ---------------------------------------------------------------------------------
    def log_prior(self, u):
        """The prior density of u (Jacobians included), up to a constant for none of it: every term is normalised.
        (The summed inputs' change of coordinates, `_standard`, has Jacobian determinant 1.)"""
        z = self._standard(u)
        x = jax.nn.sigmoid(z)
        beta_lp = self.beta_a * jnp.log(x) + self.beta_b * jnp.log1p(-x) - self.log_beta_norm  # with dx/dz
        lp = jnp.sum(jnp.where(self.est_beta, beta_lp, stats.norm.logpdf(z)))
        w = self._part(u, "shift")
        if self.shift_prior == "laplace":
            lp += jnp.sum(-jnp.abs(w) - math.log(2.0))
        else:
            lp += jnp.sum(stats.norm.logpdf(w))
            log_lam, log_tau = self._part(u, "log_lambda"), self._part(u, "log_tau")
            lp += jnp.sum(_log_half_cauchy(log_lam, 1.0)) + jnp.sum(_log_half_cauchy(log_tau, self.tau_scale))
        if not self.integrate_sigma:
            lp += jnp.sum(_log_half_normal(self._part(u, "log_sigma"), self.sigma_scale))
        if self.offset:
            lp += jnp.sum(_log_half_normal(self._part(u, "log_offset"), self.offset_scale))
        return lp

    @property
    def kink_mask(self):
        """[D] bool: the coordinates u_i that enter `log_prior` as -|u_i| (the Laplace shifts; the horseshoe
        has none), where the density has a kink at 0: `inference.optimize` steps through it with orthant-wise L-BFGS and
        `optimize.hessian` leaves it out of the curvature."""
        mask = np.zeros(self.dim, dtype=bool)
        if self.shift_prior == "laplace":
            mask[self._slices["shift"]] = True
        return mask

    def kink_gradient(self, u):
        """The gradient of the kink terms -|u_i| of `log_prior`, for u of shape [..., D], with jnp.abs's
        derivative at 0 as in the gradient of `log_density`: taking it out leaves the smooth part's."""
        return -np.asarray(_abs_grad(jnp.asarray(u, dtype=float))) * self.kink_mask

    def predictions(self, u):
        """(model value h + offset of every band [N], solver ok)."""
        sim = simulate.simulate(self.line_values(u), self.design.conditions, self.design.times, self.settings)
        h = jnp.maximum(design_mod.predictions(sim, self.design), TINY) + self.offsets(u)[self.band_target]
        return h, jnp.all(sim.ok)

    def log_likelihood(self, u, log_y=None):
        """(scale-marginalised log-likelihood of all bands, ok: the solves succeeded and it is finite).

        log_y: the data (default: the design's); pass it to reuse one compiled function for other data
        of the same design (simulation-based calibration)."""
        log_y = self.log_y if log_y is None else log_y
        h, ok = self.predictions(u)
        if self.integrate_sigma:
            ll = observation.integrated_sigma_log_likelihood(jnp.log(h), log_y, self.design.group, self.band_target,
                                                             len(self.design.groups), len(self.targets),
                                                             self.sigma_scale)
        else:
            sigma = self.sigma(u)[self.band_target]
            ll = self.noise.marginal_log_likelihood(jnp.log(h), log_y, self.design.group, sigma,
                                                    len(self.design.groups))
        return ll, ok & jnp.isfinite(ll)

    def log_density(self, u, log_y=None):
        """(log prior + log likelihood, ok). Where not ok the value is meaningless: callers make it -inf."""
        ll, ok = self.log_likelihood(u, log_y)
        lp = self.log_prior(u) + ll
        return lp, ok & jnp.isfinite(lp)

    def observe(self, u, key, log_y=None):
        """Per posterior draw: blot log scales drawn from their exact conditional, the log-likelihood of
        each band given them, and a replicate dataset (posterior predictive)."""
        log_y = self.log_y if log_y is None else log_y
        h, ok = self.predictions(u)
        n_groups = len(self.design.groups)
        k_scale, k_noise = jax.random.split(key)
        k_sigma = jax.random.fold_in(key, 1)
        if self.integrate_sigma:  # sigma first from its conditional given h, then the scales given sigma
            sigma_t = observation.draw_sigma(k_sigma, jnp.log(h), log_y, self.design.group, self.band_target, n_groups,
                                             len(self.targets), self.sigma_scale)
        else:
            sigma_t = self.sigma(u)
        sigma = sigma_t[self.band_target]
        log_scale = self.noise.draw_log_scales(k_scale, jnp.log(h), log_y, self.design.group, sigma, n_groups)
        mean = jnp.log(h) + log_scale[self.design.group]
        log_lik = self.noise.log_likelihood(log_y, mean, sigma)
        y_rep = jnp.exp(self.noise.draw_log_y(k_noise, mean, sigma))
        return {"log_scale": log_scale, "sigma": sigma_t, "log_lik": log_lik, "y_rep": y_rep, "h": h, "ok": ok}

    # ---- starts ------------------------------------------------------------------------------------
    def prior_draw(self, key):
        """One draw of u from the prior (the multi-start MAP's starting points)."""
        keys = jax.random.split(key, 7)
        n_est = len(self.estimated)
        z = jax.random.normal(keys[0], (n_est,))
        frac = jax.random.beta(keys[1], self.beta_a, self.beta_b, (n_est,))
        parts = [self._from_standard(jnp.where(self.est_beta, jnp.log(frac) - jnp.log1p(-frac), z))]
        n_shift = len(self.shifted_lines) * len(self.shift_params)
        if self.shift_prior == "laplace":
            parts.append(jax.random.laplace(keys[2], (n_shift,)))
        else:
            parts.append(jax.random.normal(keys[2], (n_shift,)))
            parts.append(jnp.log(jnp.abs(jax.random.cauchy(keys[3], (n_shift,)))))
            parts.append(jnp.log(self.tau_scale * jnp.abs(jax.random.cauchy(keys[4], (len(self.shifted_lines),)))))
        if not self.integrate_sigma:
            parts.append(jnp.log(self.sigma_scale * jnp.abs(jax.random.normal(keys[5], (len(self.targets),)))))
        if self.offset:
            parts.append(jnp.log(self.offset_scale * jnp.abs(jax.random.normal(keys[6], (len(self.targets),)))))
        return jnp.concatenate(parts)

    def prior_variance(self, key, n: int = 4000) -> np.ndarray:
        """[D] the prior variance of each coordinate of u (`pipeline.inference.laplace`), from n prior draws."""
        return np.var(np.asarray(jax.vmap(self.prior_draw)(jax.random.split(key, n))), axis=0)

    def named(self, u):
        """The quantities reported per draw: estimated parameters, shifts, log2 fold changes, noise."""
        values = self.line_values(u)
        ref = values[0][self.shift_index] if self.shift_params else jnp.zeros(0)
        log2_fc = (jnp.log2(values[1:][:, self.shift_index]) - jnp.log2(ref)) if self.shift_params else \
            jnp.zeros((len(self.shifted_lines), 0))
        out = {"estimates": self.estimates(u), "shift": self.shifts(u), "log2_fc": log2_fc}
        if not self.integrate_sigma:  # else sigma is drawn with the scales (`observe`)
            out["sigma"] = self.sigma(u)
        if self.offset:
            out["offset"] = self.offsets(u)
        if self.shift_prior == "horseshoe":
            out["tau"] = jnp.exp(self._part(u, "log_tau"))
        return out


def _log_half_normal(log_x, scale):
    """log density of log x when x ~ HalfNormal(scale) (with the Jacobian x)."""
    x = jnp.exp(log_x)
    return math.log(2.0) + stats.norm.logpdf(x, 0.0, scale) + log_x


_abs_grad = jax.jit(jax.grad(lambda u: jnp.sum(jnp.abs(u))))


def _log_half_cauchy(log_x, scale):
    """log density of log x when x ~ HalfCauchy(scale) (with the Jacobian x)."""
    x = jnp.exp(log_x)
    return math.log(2.0) + stats.cauchy.logpdf(x, 0.0, scale) + log_x
