"""A PEtab v1 problem as a pure JAX log-likelihood of its parameters.

`load(yaml)` reads the tables with the `petab` package and the SBML model with `pipeline.sbml`,
and returns a `Problem`: arrays that say, for every simulation (a simulation condition with an
optional pre-equilibration condition), which value each model parameter and overridden initial
state takes, and for every measurement row its simulation, time, observable and per-row
observable and noise parameters. `log_likelihood(problem, x)` is then a pure, jit-able and
differentiable function of the estimated parameters `x` on their parameter scale (the order of
`problem.x_ids`).

PEtab semantics (v1):
- values in the parameter table (nominal, bounds) are on the linear scale; `x` is on each
  parameter's `parameterScale` (lin, log, log10);
- a condition-table column names a model parameter, compartment or species; its cells are numbers or
  parameter ids; a species cell sets that species' initial value after any pre-equilibration
  (an empty cell keeps the pre-equilibrated value);
- pre-equilibration runs the pre-equilibration condition from the model's initial values to a
  steady state (`pipeline.model.solver.steady_state`, by default integration to diffrax's steady-state event);
- `observableParameter<k>_<observable>` and `noiseParameter<k>_<observable>` in the formulas take
  the k-th entry of the row's `observableParameters` / `noiseParameters` (numbers or parameter ids);
- log-likelihood: natural log, all constants, normal or Laplace noise on the lin, log or log10
  scale (with the Jacobian of the transformation of the data).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline import runtime

runtime.configure()  # float64, and EQX_ON_ERROR before diffrax imports equinox (see pipeline.runtime)

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import sympy as sp

from pipeline.model import solver
from pipeline.petab import sbml
from pipeline.model.solver import SolverSettings
from pipeline.problems import InputError, Problem as Issue, display_path

SCALES = ("lin", "log", "log10")
TRANSFORMATIONS = ("lin", "log", "log10")
DISTRIBUTIONS = ("normal", "laplace")


REFERENCE = SolverSettings(rtol=1e-10, atol=1e-12, max_steps=8192, preequilibration="event")
"""Numerics of the imported model's solves by default: tight, for reference log-likelihoods (a fit config may
loosen them). Pre-equilibration integrates to the steady-state event (no Newton solve: models with conserved
moieties have a singular Jacobian)."""


@dataclass(eq=False)
class Problem:
    """A PEtab problem compiled to arrays (see the module docstring). `C` simulations, `N` measurements."""

    name: str
    ode: sbml.OdeModel
    parameter_ids: tuple[str, ...]  # the parameter table's rows
    scale: np.ndarray  # [Q] index into SCALES
    lower: np.ndarray  # [Q] linear scale
    upper: np.ndarray
    nominal: np.ndarray  # [Q] linear scale
    estimated: np.ndarray  # [Q] bool
    prior: pd.DataFrame  # the parameter table's prior columns (may be empty)
    simulations: tuple[tuple[str | None, str], ...]  # (pre-equilibration condition or None, condition)
    p_const: np.ndarray  # [C, P] model parameter values ...
    p_index: np.ndarray  # [C, P] ... or the parameter-table row they take (-1: p_const)
    pre_p_const: np.ndarray  # [C, P] the same for the pre-equilibration condition
    pre_p_index: np.ndarray
    has_preeq: np.ndarray  # [C] bool
    x0_const: np.ndarray  # [C, S] initial-state overrides of the simulation condition (NaN: none) ...
    x0_index: np.ndarray  # [C, S] ... or the parameter-table row (-1: x0_const)
    times: np.ndarray  # [C, T] output times of each simulation (padded by repeating the last)
    jump_fns: Callable  # (p_model) -> [J] times of the discontinuities of the inputs
    observable_ids: tuple[str, ...]
    observable_fns: tuple[Callable, ...]  # (t, x, p_model, x_lin, obs_par, noise_par) -> (h, sigma)
    transformation: np.ndarray  # [O] index into TRANSFORMATIONS
    distribution: np.ndarray  # [O] index into DISTRIBUTIONS
    row_sim: np.ndarray  # [N]
    row_time: np.ndarray  # [N] index into times[row_sim]
    row_obs: np.ndarray  # [N]
    y: np.ndarray  # [N]
    obs_const: np.ndarray  # [N, K] per-row observable parameters (numbers) ...
    obs_index: np.ndarray  # [N, K] ... or parameter-table rows (-1: obs_const)
    noise_const: np.ndarray  # [N, M]
    noise_index: np.ndarray
    rhs: Callable = field(repr=False)  # (t, x, p_model) -> dx/dt
    initial: Callable = field(repr=False)  # (p_model) -> x0
    measurements: pd.DataFrame = field(repr=False)

    @property
    def x_ids(self) -> tuple[str, ...]:
        """The estimated parameters, in the order of `x`."""
        return tuple(p for p, e in zip(self.parameter_ids, self.estimated) if e)

    @property
    def x_nominal(self) -> np.ndarray:
        """The estimated parameters' nominal values on their parameter scale."""
        return to_scale(self.nominal, self.scale)[self.estimated]

    @property
    def x_lower(self) -> np.ndarray:
        return to_scale(self.lower, self.scale)[self.estimated]

    @property
    def x_upper(self) -> np.ndarray:
        return to_scale(self.upper, self.scale)[self.estimated]

    def all_values(self, x):
        """[Q] linear values of every parameter-table row, with `x` (parameter scale) for the estimated ones."""
        est = np.flatnonzero(self.estimated)
        return jnp.asarray(self.nominal).at[est].set(from_scale(x, self.scale[est]))


def to_scale(value, scale):
    value = np.asarray(value, dtype=float)
    return np.where(scale == 1, np.log(value), np.where(scale == 2, np.log10(value), value))


def from_scale(x, scale):
    """Linear values of x on the given scales (each branch sees only its own entries, so a large linear-scale
    value cannot overflow exp and poison the gradient through `where`)."""
    return jnp.where(scale == 1, jnp.exp(jnp.where(scale == 1, x, 0.0)),
                     jnp.where(scale == 2, 10.0 ** jnp.where(scale == 2, x, 0.0), x))


# ---- likelihood ------------------------------------------------------------------------------------------
def _pick(const, index, values):
    return jnp.where(index >= 0, values[jnp.maximum(index, 0)], const)


def simulate(problem: Problem, values, settings: SolverSettings = REFERENCE):
    """(states [C, T, S] at `problem.times`, ok [C]) for linear parameter-table values [Q]."""
    p_model = _pick(problem.p_const, problem.p_index, values)
    pre_p = _pick(problem.pre_p_const, problem.pre_p_index, values)
    x0_override = _pick(problem.x0_const, problem.x0_index, values)

    def one(p, pp, preeq, override, times):
        x0, ok = problem.initial(p), jnp.asarray(True)
        if problem.has_preeq.any():
            x_pre, pre_ok = solver.steady_state(problem.rhs, problem.initial(pp), pp, settings, autonomous=False)
            x0 = jnp.where(preeq, x_pre, x0)
            ok = jnp.where(preeq, pre_ok, True)
        x0 = jnp.where(jnp.isnan(override), x0, override)
        sol = solver.solve(problem.rhs, x0, 0.0, times[-1], p, diffrax.SaveAt(ts=times), settings,
                           autonomous=False, jump_ts=problem.jump_fns(p))
        return sol.ys, ok & solver.succeeded(sol)

    return jax.vmap(one)(p_model, pre_p, jnp.asarray(problem.has_preeq), x0_override, jnp.asarray(problem.times))


def predictions(problem: Problem, values, settings: SolverSettings = REFERENCE):
    """(model value h [N], noise parameter sigma [N], ok) of every measurement row."""
    states, ok = simulate(problem, values, settings)
    p_model = _pick(problem.p_const, problem.p_index, values)
    x_rows = states[problem.row_sim, problem.row_time]
    t_rows = jnp.asarray(problem.times)[problem.row_sim, problem.row_time]
    obs_par = _pick(problem.obs_const, problem.obs_index, values)
    noise_par = _pick(problem.noise_const, problem.noise_index, values)
    h, sigma = jnp.zeros(len(problem.y)), jnp.ones(len(problem.y))
    for o, fn in enumerate(problem.observable_fns):
        rows = np.flatnonzero(problem.row_obs == o)
        if not len(rows):
            continue
        ho, so = jax.vmap(fn, in_axes=(0, 0, 0, None, 0, 0))(
            t_rows[rows], x_rows[rows], p_model[problem.row_sim[rows]], values, obs_par[rows], noise_par[rows])
        h, sigma = h.at[rows].set(ho), sigma.at[rows].set(so)
    return h, sigma, jnp.all(ok)


def row_log_likelihood(problem: Problem, h, sigma, y=None):
    """[N] log-likelihood of each measurement y (default: the problem's) given model values h and noise
    parameters sigma."""
    y = jnp.asarray(problem.y if y is None else y)
    tr = problem.transformation[problem.row_obs]
    dist = problem.distribution[problem.row_obs]
    safe = lambda a: jnp.where(tr > 0, jnp.maximum(a, 1e-300), 1.0)  # noqa: E731
    log_h, log_y = jnp.log(safe(h)), jnp.log(safe(y))
    scale = jnp.where(tr == 2, math.log(10.0), 1.0)
    r = jnp.where(tr == 0, y - h, (log_y - log_h) / scale)
    jacobian = jnp.where(tr == 0, 0.0, log_y + jnp.log(scale))  # d(transformed y)/dy = 1 / (y ln b)
    normal = -0.5 * jnp.log(2 * jnp.pi * sigma**2) - 0.5 * (r / sigma) ** 2
    laplace = -jnp.log(2 * sigma) - jnp.abs(r) / sigma
    return jnp.where(dist == 0, normal, laplace) - jacobian


def log_likelihood(problem: Problem, x, settings: SolverSettings = REFERENCE, y=None):
    """(log-likelihood, ok) at the estimated parameters x (parameter scale, `problem.x_ids` order), of the
    measurements y (default: the problem's)."""
    h, sigma, ok = predictions(problem, problem.all_values(x), settings)
    ll = jnp.sum(row_log_likelihood(problem, h, sigma, y))
    return ll, ok & jnp.isfinite(ll)


# ---- loading -----------------------------------------------------------------------------------------------
def load(yaml_path: str | Path) -> Problem:
    """Read and compile a PEtab v1 problem; every problem found is raised together as an `InputError`."""
    import petab.v1 as petab  # imported here: only the PEtab commands need it

    yaml_path = Path(yaml_path)
    where = display_path(yaml_path)
    try:
        with warnings.catch_warnings():  # the petab package's own pandas deprecation warnings
            warnings.simplefilter("ignore")
            pp = petab.Problem.from_yaml(str(yaml_path))
    except Exception as e:  # the petab package raises many kinds; report them as bad input
        raise InputError([Issue(where, f"not a readable PEtab v1 problem: {e}",
                                fix="check it with `petablint -y <problem.yaml>`")]) from None
    import yaml

    spec = yaml.safe_load(yaml_path.read_text())
    files = spec["problems"][0]["sbml_files"]
    if len(files) != 1:
        raise InputError([Issue(where, f"{len(files)} SBML files", fix="give exactly one SBML model")])
    ode = sbml.read(yaml_path.parent / files[0])
    return _Compiler(pp, ode, where, yaml_path.stem).compile()


class _Compiler:
    def __init__(self, pp, ode: sbml.OdeModel, where: str, name: str):
        self.pp, self.ode, self.where, self.name = pp, ode, where, name
        self.issues: list[Issue] = []
        par = pp.parameter_df
        self.pids = tuple(par.index)
        self.par_row = {p: i for i, p in enumerate(self.pids)}

    def issue(self, message: str, fix: str, **where) -> None:
        self.issues.append(Issue(where.pop("file", self.where), message, fix=fix, **where))

    def value(self, cell, file: str, row: int | None, column: str) -> tuple[float, int]:
        """(constant, parameter-table row or -1) of a table cell holding a number or a parameter id."""
        if isinstance(cell, (int, float, np.number)):
            return float(cell), -1
        text = str(cell).strip()
        try:
            return float(text), -1
        except ValueError:
            pass
        if text in self.par_row:
            return math.nan, self.par_row[text]
        self.issue(f"'{text}' is neither a number nor a parameter id", "add it to the parameter table",
                   file=file, row=row, column=column)
        return math.nan, -1

    def compile(self) -> Problem:
        pp, ode = self.pp, self.ode
        par = pp.parameter_df
        scale = np.array([SCALES.index(s) if s in SCALES else -1 for s in par["parameterScale"]])
        for pid, s in zip(self.pids, par["parameterScale"]):
            if s not in SCALES:
                self.issue(f"parameter '{pid}' has parameterScale {s!r}", f"use one of {', '.join(SCALES)}",
                           column="parameterScale")
        measurements = pp.measurement_df.reset_index(drop=True)
        if np.isinf(measurements["time"]).any():
            self.issue("steady-state measurements (time inf)", "measure at finite times", column="time")
        sims, row_sim = self._simulations(measurements)
        p_const, p_index, x0_const, x0_index = self._conditions([c for _, c in sims])
        pre = [c if c is not None else s for c, s in sims]
        pre_p_const, pre_p_index, _, _ = self._conditions(pre)
        times, row_time = self._times(measurements, len(sims), row_sim)
        obs_ids, fns, trans, dists, width = self._observables()
        row_obs = np.array([obs_ids.index(o) for o in measurements["observableId"]])
        obs_const, obs_index = self._row_parameters(measurements, "observableParameters", width[0])
        noise_const, noise_index = self._row_parameters(measurements, "noiseParameters", width[1])
        if self.issues:
            raise InputError(self.issues)
        prior_cols = [c for c in ("priorType", "priorParameters", "objectivePriorType", "objectivePriorParameters")
                      if c in par.columns]
        rhs, initial, jumps = _compile_ode(ode)
        return Problem(
            name=self.name, ode=ode, parameter_ids=self.pids, scale=scale,
            lower=par["lowerBound"].to_numpy(float), upper=par["upperBound"].to_numpy(float),
            nominal=par["nominalValue"].to_numpy(float), estimated=par["estimate"].to_numpy(int) == 1,
            prior=par[prior_cols].copy(), simulations=tuple(sims),
            p_const=p_const, p_index=p_index, pre_p_const=pre_p_const, pre_p_index=pre_p_index,
            has_preeq=np.array([c is not None for c, _ in sims]), x0_const=x0_const, x0_index=x0_index,
            times=times, jump_fns=jumps, observable_ids=obs_ids, observable_fns=fns,
            transformation=trans, distribution=dists, row_sim=row_sim, row_time=row_time, row_obs=row_obs,
            y=measurements["measurement"].to_numpy(float), obs_const=obs_const, obs_index=obs_index,
            noise_const=noise_const, noise_index=noise_index, rhs=rhs, initial=initial, measurements=measurements)

    def _simulations(self, measurements: pd.DataFrame) -> tuple[list[tuple[str | None, str]], np.ndarray]:
        """(the distinct (pre-equilibration or None, condition) pairs, the pair of each row)."""
        col = "preequilibrationConditionId"
        pre = measurements[col] if col in measurements else pd.Series([None] * len(measurements))
        pre = [None if (p is None or (isinstance(p, float) and math.isnan(p)) or str(p).strip() == "") else str(p)
               for p in pre]
        pairs = list(zip(pre, measurements["simulationConditionId"].astype(str)))
        sims = list(dict.fromkeys(pairs))
        index = {pair: i for i, pair in enumerate(sims)}
        return sims, np.array([index[p] for p in pairs], dtype=int)

    def _conditions(self, ids: list[str]):
        ode, cond = self.ode, self.pp.condition_df
        file = "condition table"
        states = list(ode.states)
        p_const = np.array([[ode.values[p] for p in ode.parameters]] * len(ids), dtype=float).reshape(len(ids), -1)
        p_index = np.array([[self.par_row.get(p, -1) for p in ode.parameters]] * len(ids), dtype=int)
        p_index = p_index.reshape(len(ids), len(ode.parameters))
        x0_const = np.full((len(ids), len(states)), np.nan)
        x0_index = np.full((len(ids), len(states)), -1, dtype=int)
        for col in cond.columns:
            if col == "conditionName":
                continue
            if col not in ode.parameters and col not in states:
                self.issue(f"column '{col}' is not a parameter, compartment or species of the model",
                           "remove the column or fix its name", file=file, column=col)
                continue
            for i, cid in enumerate(ids):
                if cid not in cond.index:
                    self.issue(f"condition '{cid}' is not in the condition table", "add it", file=file)
                    continue
                cell = cond.loc[cid, col]
                if isinstance(cell, float) and math.isnan(cell):
                    continue
                row = int(np.flatnonzero(cond.index == cid)[0]) + 2
                const, index = self.value(cell, file, row, col)
                if col in states:
                    x0_const[i, states.index(col)], x0_index[i, states.index(col)] = const, index
                else:
                    j = ode.parameters.index(col)
                    p_const[i, j], p_index[i, j] = const, index
        return p_const, p_index, x0_const, x0_index

    def _times(self, measurements: pd.DataFrame, n_sims: int, row_sim: np.ndarray):
        """(output times [C, T] padded by repeating the last, each row's index into its simulation's times)."""
        key = list(zip(row_sim, measurements["time"].to_numpy(float)))
        per_sim = [sorted({t for s, t in key if s == i}) for i in range(n_sims)]
        width = max(len(t) for t in per_sim)
        times = np.array([t + [t[-1]] * (width - len(t)) for t in per_sim], dtype=float)
        row_time = np.array([per_sim[s].index(t) for s, t in key], dtype=int)
        return times, row_time

    def _row_parameters(self, measurements: pd.DataFrame, column: str, width: int):
        n = len(measurements)
        const, index = np.full((n, max(width, 1)), np.nan), np.full((n, max(width, 1)), -1, dtype=int)
        if column not in measurements:
            return const, index
        for i, cell in enumerate(measurements[column]):
            if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "":
                continue
            parts = str(cell).split(";") if isinstance(cell, str) else [cell]
            for k, part in enumerate(parts[:width]):
                const[i, k], index[i, k] = self.value(part, "measurement table", i + 2, column)
        return const, index

    def _observables(self):
        from petab.v1.math import sympify_petab

        obs = self.pp.observable_df
        ode = self.ode
        t, xs = sbml.TIME, [ode.symbol(s) for s in ode.states]
        ps = [ode.symbol(p) for p in ode.parameters]
        qs = [ode.symbol(p) for p in self.pids]
        fns, trans, dists, widths = [], [], [], [0, 0]
        parsed = {}
        for oid, row in obs.iterrows():
            h = ode.substitute(sympify_petab(row["observableFormula"]))
            s = ode.substitute(sympify_petab(row["noiseFormula"]))
            parsed[oid] = (h, s)
            for e in (h, s):
                for sym in e.free_symbols:
                    for k, prefix in enumerate(("observableParameter", "noiseParameter")):
                        if str(sym).startswith(prefix) and str(sym).endswith(f"_{oid}"):
                            widths[k] = max(widths[k], int(str(sym)[len(prefix):-len(oid) - 1]))
        ob = [sp.Symbol(f"__obs{k}", real=True) for k in range(max(widths[0], 1))]
        nb = [sp.Symbol(f"__noise{k}", real=True) for k in range(max(widths[1], 1))]
        known = {str(v) for v in [t] + xs + ps + qs}
        for oid, (h, s) in parsed.items():
            placeholders = {ode.symbol(f"observableParameter{k + 1}_{oid}"): ob[k] for k in range(widths[0])}
            placeholders |= {ode.symbol(f"noiseParameter{k + 1}_{oid}"): nb[k] for k in range(widths[1])}
            h, s = h.xreplace(placeholders), s.xreplace(placeholders)
            stray = {str(v) for e in (h, s) for v in e.free_symbols} - known - {str(v) for v in ob + nb}
            if stray:
                self.issue(f"observable '{oid}' uses unknown symbols {', '.join(sorted(stray))}",
                           "add them to the parameter table or the model", file="observable table", column="observableFormula")
                continue
            # a model parameter that is also in the parameter table takes its per-condition value (ps first)
            qs_only = [q if str(q) not in ode.parameters else sp.Dummy() for q in qs]
            fn = sp.lambdify([t, xs, ps, qs_only, ob, nb], [h, s], modules="jax", cse=True)
            fns.append(lambda *a, fn=fn: tuple(jnp.asarray(v, dtype=float) for v in fn(*a)))
            row = obs.loc[oid]
            tr = row.get("observableTransformation", "lin")
            tr = "lin" if (isinstance(tr, float) and math.isnan(tr)) else str(tr)
            dist = row.get("noiseDistribution", "normal")
            dist = "normal" if (isinstance(dist, float) and math.isnan(dist)) else str(dist)
            if tr not in TRANSFORMATIONS or dist not in DISTRIBUTIONS:
                self.issue(f"observable '{oid}' has transformation {tr!r} and noise {dist!r}",
                           f"use {', '.join(TRANSFORMATIONS)} and {', '.join(DISTRIBUTIONS)}", file="observable table")
                continue
            trans.append(TRANSFORMATIONS.index(tr))
            dists.append(DISTRIBUTIONS.index(dist))
        return tuple(parsed), tuple(fns), np.array(trans, dtype=int), np.array(dists, dtype=int), widths


def _compile_ode(ode: sbml.OdeModel):
    """JAX functions (rhs(t, x, p), initial(p), jumps(p)) of the symbolic model."""
    t, xs, ps = sbml.TIME, [ode.symbol(s) for s in ode.states], [ode.symbol(p) for p in ode.parameters]
    f_rhs = sp.lambdify([t, xs, ps], list(ode.rhs), modules="jax", cse=True)
    f_init = sp.lambdify([ps], list(ode.initial), modules="jax", cse=True)
    jump_exprs = []
    for e in ode.rhs:
        for rel in e.atoms(sp.core.relational.Relational):
            if t in rel.free_symbols:
                roots = sp.solve(sp.Eq(rel.lhs, rel.rhs), t)
                jump_exprs += [r for r in roots if not (r.free_symbols & set(xs))]
    jump_exprs = list(dict.fromkeys(jump_exprs))
    f_jump = sp.lambdify([ps], jump_exprs, modules="jax") if jump_exprs else None

    def rhs(time, x, p):
        return jnp.stack([jnp.asarray(v, dtype=float) * jnp.ones(()) for v in f_rhs(time, list(x), list(p))])

    def initial(p):
        return jnp.stack([jnp.asarray(v, dtype=float) * jnp.ones(()) for v in f_init(list(p))])

    def jumps(p):
        if f_jump is None:
            return jnp.zeros(0)
        return jnp.stack([jnp.asarray(v, dtype=float) for v in f_jump(list(p))])

    return rhs, initial, jumps
