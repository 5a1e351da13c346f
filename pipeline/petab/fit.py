"""Bayesian fits of an imported PEtab problem (`petab:` in a config): the `fit_map` and `fit` stages.

`PetabModel` gives a PEtab problem the model interface of `pipeline.inference.engine` (a log density on
one flat unconstrained vector `u`, and what the posterior's outputs need), so the engine's multi-start
MAP and sampler run on it as on the blot model. Coordinates: one per estimated parameter, named by its
parameterId; on the parameter's scale x = lower + (upper - lower) * sigmoid(u), so the bounds hold everywhere.

Priors: the parameter table's `objectivePriorType` where given (parameterScaleUniform, parameterScaleNormal,
parameterScaleLaplace, on the parameter scale within the bounds); where none is given, PEtab's default,
uniform on the parameter scale within the bounds. `prior_group` draws from exactly that prior (by inverse CDF
within the bounds) for the report's prior-to-posterior contraction. The starts of the MAP fits are drawn
uniformly on the parameter scale within the bounds, as pyPESTO does, or, with `map.start_sd`, normally around
the parameter table's nominal values (that many units of u apart): on problems with bounds over many decades
most uniform starts fail to solve.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr
from jax.scipy import stats

from pipeline.outputs import figures
from pipeline import vocabulary as v
from pipeline.inference import engine
from pipeline.petab import problem as petabproblem
from pipeline.model.solver import SolverSettings
from pipeline.problems import InputError, Problem as Issue

PRIORS = ("parameterScaleUniform", "parameterScaleNormal", "parameterScaleLaplace")
Y = v.Y  # the data variable and the dim of its rows in posterior.nc, as in a blot analysis
MEASUREMENT = v.DIM_MEASUREMENT


class PetabModel:
    """The posterior of a PEtab problem on u (see the module docstring); every method is pure JAX."""

    rebuild = None  # (function, arguments) that build it in a worker process: set by `model`

    def __init__(self, problem: petabproblem.Problem, settings: SolverSettings = petabproblem.REFERENCE,
                 start_sd: float | None = None):
        self.problem, self.settings, self.start_sd = problem, settings, start_sd
        self.coords = problem.x_ids
        self.dim = len(self.coords)
        self.lower, self.upper = problem.x_lower, problem.x_upper
        self.prior_kind, self.prior_loc, self.prior_scale = _priors(problem)
        self.log_y = jnp.asarray(problem.y)  # the data argument of the model interface (here y on its own scale)
        self.attrs = {"petab_problem": problem.name, "estimated": list(self.coords),
                      "parameter_scale": [petabproblem.SCALES[s] for s in problem.scale[problem.estimated]]}

    def x(self, u):
        """The estimated parameters on their parameter scale."""
        return self.lower + (self.upper - self.lower) * jax.nn.sigmoid(u)

    def log_prior(self, u):
        jac = jnp.log(self.upper - self.lower) + jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u)
        x = self.x(u)
        dens = jnp.where(self.prior_kind == 0, -jnp.log(self.upper - self.lower),
                         jnp.where(self.prior_kind == 1, stats.norm.logpdf(x, self.prior_loc, self.prior_scale),
                                   stats.laplace.logpdf(x, self.prior_loc, self.prior_scale)))
        return jnp.sum(dens + jac)

    def log_likelihood(self, u, log_y=None):
        return petabproblem.log_likelihood(self.problem, self.x(u), self.settings, log_y)

    def log_density(self, u, log_y=None):
        ll, ok = self.log_likelihood(u, log_y)
        lp = self.log_prior(u) + ll
        return lp, ok & jnp.isfinite(lp)

    def prior_draw(self, key):
        """A MAP start: x uniform within the bounds, or (start_sd) around the nominal values."""
        if self.start_sd is None:
            return jax.random.logistic(key, (self.dim,))
        frac = np.clip((self.problem.x_nominal - self.lower) / (self.upper - self.lower), 1e-9, 1 - 1e-9)
        return jnp.log(frac) - jnp.log1p(-frac) + self.start_sd * jax.random.normal(key, (self.dim,))

    @property
    def kink_mask(self):
        return np.zeros(self.dim, dtype=bool)

    def kink_gradient(self, u):
        return np.zeros(np.shape(u))

    def observe(self, u, key):
        """Per posterior draw: model values h, noise parameters, log-likelihood per row, a replicate dataset."""
        values = self.problem.all_values(self.x(u))
        h, sigma, ok = petabproblem.predictions(self.problem, values, self.settings)
        log_lik = petabproblem.row_log_likelihood(self.problem, h, sigma)
        tr = self.problem.transformation[self.problem.row_obs]
        dist = self.problem.distribution[self.problem.row_obs]
        noise = jnp.where(dist == 0, jax.random.normal(key, h.shape), jax.random.laplace(key, h.shape)) * sigma
        safe_h = jnp.maximum(h, 1e-300)
        y_rep = jnp.where(tr == 0, h + noise, jnp.where(tr == 1, safe_h * jnp.exp(noise), safe_h * 10.0 ** noise))
        return {"h": h, "sigma": sigma, "log_lik": log_lik, "y_rep": y_rep, "ok": ok}

    def describe(self, u) -> dict:
        x = np.asarray(self.x(u))
        values = petabproblem.from_scale(x, self.problem.scale[self.problem.estimated])
        return {"parameters": {n: float(v) for n, v in zip(self.coords, np.asarray(values))},
                "parameters_scaled": {n: float(v) for n, v in zip(self.coords, x)}}


    def values(self, flat_u) -> np.ndarray:
        """[draws, estimated] the estimated parameters on their linear scale."""
        x = np.asarray(jax.vmap(self.x)(flat_u))
        return np.asarray(petabproblem.from_scale(x, self.problem.scale[self.problem.estimated]))

    def variables(self, flat_u, observed) -> tuple[dict, dict, dict]:
        """The estimated parameters (linear scale) and the model values `h` of every measurement row."""
        values = self.values(flat_u)
        data = {pid: values[:, i] for i, pid in enumerate(self.coords)}
        data["h"] = observed["h"]
        return data, {"h": [MEASUREMENT]}, {}

    def measurements(self) -> tuple[np.ndarray, dict]:
        rows = self.problem.measurements
        labels = {c: (MEASUREMENT, rows[c].astype(str).to_numpy()) for c in ("observableId", "simulationConditionId")}
        labels["simulation"] = (MEASUREMENT, np.array([_simulation_label(*self.problem.simulations[s])
                                                       for s in self.problem.row_sim]))
        labels["time"] = (MEASUREMENT, rows["time"].to_numpy(float))
        return self.problem.y, {MEASUREMENT: np.arange(len(rows)), **labels}

    def prior_group(self, key, n: int) -> xr.Dataset:
        """n exact draws of the estimated parameters under their prior, as one chain labelled as in `posterior`
        (linear scale): each parameter's prior on its parameter scale, truncated to its bounds, by inverse CDF."""
        x = self._prior_x(key, n)
        values = np.asarray(petabproblem.from_scale(x, self.problem.scale[self.problem.estimated]))
        data = {pid: (("chain", "draw"), values[None, :, i]) for i, pid in enumerate(self.coords)}
        return xr.Dataset(data, coords={"chain": [0], "draw": np.arange(n)}, attrs=self.attrs)

    def prior_variance(self, key, n: int = 4000) -> np.ndarray:
        """[D] the prior variance of each coordinate of u (`pipeline.inference.laplace`), from n exact draws."""
        frac = np.clip((self._prior_x(key, n) - self.lower) / (self.upper - self.lower), 1e-12, 1 - 1e-12)
        return np.var(np.log(frac) - np.log1p(-frac), axis=0)

    def _prior_x(self, key, n: int) -> np.ndarray:
        """[n, D] exact prior draws on the parameter scale: each prior truncated to its bounds, by inverse CDF."""
        p = np.asarray(jax.random.uniform(key, (n, self.dim), minval=1e-12, maxval=1.0 - 1e-12))
        x = np.empty_like(p)
        for i in range(self.dim):
            lo, hi = float(self.lower[i]), float(self.upper[i])
            dist = (scipy.stats.uniform(lo, hi - lo), scipy.stats.norm(self.prior_loc[i], self.prior_scale[i]),
                    scipy.stats.laplace(self.prior_loc[i], self.prior_scale[i]))[self.prior_kind[i]]
            a, b = dist.cdf(lo), dist.cdf(hi)
            x[:, i] = np.clip(dist.ppf(a + p[:, i] * (b - a)), lo, hi)
        return x


def _priors(problem: petabproblem.Problem):
    kind = np.zeros(int(problem.estimated.sum()), dtype=int)
    loc, scale = np.zeros_like(kind, dtype=float), np.ones_like(kind, dtype=float)
    table = problem.prior.loc[problem.estimated] if len(problem.prior.columns) else None
    if table is None or "objectivePriorType" not in table:
        return kind, loc, scale
    issues = []
    for i, (pid, row) in enumerate(table.iterrows()):
        t = row["objectivePriorType"]
        if not isinstance(t, str) or not t.strip():
            continue
        if t not in PRIORS:
            issues.append(Issue("parameter table", f"objectivePriorType {t!r} of '{pid}' is not supported",
                                fix=f"use one of {', '.join(PRIORS)} or leave it empty (uniform within the bounds)"))
            continue
        kind[i] = PRIORS.index(t)
        if kind[i]:
            a, b = (float(v) for v in str(row["objectivePriorParameters"]).split(";"))
            loc[i], scale[i] = a, b
    if issues:
        raise InputError(issues)
    return kind, loc, scale


def model(config: dict) -> PetabModel:
    settings = dataclasses.replace(petabproblem.REFERENCE, **config["solver"])
    m = PetabModel(petabproblem.load(config["petab"]), settings, config["map"].get("start_sd"))
    m.rebuild = (model, (config,))  # how a worker process builds it again
    return m


def run_map(config: dict, log: Callable[[str], None] = print) -> dict:
    m = model(config)
    return engine.map_fits(m, config, m.describe, log)


def run_posterior(config: dict, map_result: dict, log: Callable[[str], None] = print, checkpoint=None,
                  workers: int | None = None):
    """(InferenceData, diagnostics dict); checkpoint and workers: as `pipeline.fit.run_posterior`'s."""
    return engine.posterior(model(config), config, map_result, log, checkpoint=checkpoint, workers=workers)


def _simulation_label(preequilibration: str | None, condition: str) -> str:
    return f"{preequilibration} -> {condition}" if preequilibration else condition


def plot_predictive(idata: az.InferenceData):
    """One panel per observable: the posterior-predictive median and 90 % band of each simulation (condition,
    after its pre-equilibration if any) over time, with the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = idata.posterior_predictive[Y].stack(sample=("chain", "draw"))
    obs = idata.observed_data[Y]
    observables = list(dict.fromkeys(obs["observableId"].values))
    fig, axes = plt.subplots(1, len(observables), figsize=(4.2 * len(observables), 3.4), squeeze=False)
    for ax, o in zip(axes[0], observables):
        rows = np.flatnonzero(obs["observableId"].values == o)
        conditions = list(dict.fromkeys(obs["simulation"].values[rows]))
        for k, c in enumerate(conditions):
            sel = rows[obs["simulation"].values[rows] == c]
            sel = sel[np.argsort(obs["time"].values[sel], kind="stable")]
            t = obs["time"].values[sel]
            q = np.quantile(rep.values[sel], [0.05, 0.5, 0.95], axis=1)
            color = plt.cm.viridis(k / max(len(conditions) - 1, 1))
            ax.fill_between(t, q[0], q[2], color=color, alpha=0.2, linewidth=0)
            ax.plot(t, q[1], color=color, lw=1.2, label=c)
            ax.plot(t, obs.values[sel], "o", color=color, ms=3)
        ax.set_title(o)
        ax.set_xlabel("time")
    axes[0][0].set_ylabel("signal")
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle("Data (points) and posterior predictive (line: median; band: 90 %)", fontsize=9)
    fig.tight_layout()
    return fig


def summary_table(idata: az.InferenceData) -> pd.DataFrame:
    """Per estimated parameter: posterior median and 90 % interval on the linear scale."""
    rows = []
    for pid in figures.list_attr(idata.posterior, "estimated"):
        v = idata.posterior[pid].values.ravel()
        rows.append({"parameter": pid, "median": float(np.median(v)), "ci90_low": float(np.quantile(v, 0.05)),
                     "ci90_high": float(np.quantile(v, 0.95)),
                     "log10_width": float(np.log10(np.quantile(v, 0.95) / np.quantile(v, 0.05)))
                     if np.all(v > 0) else math.nan})
    return pd.DataFrame(rows)
