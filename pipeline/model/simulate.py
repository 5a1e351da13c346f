"""The simulation protocol of model-spec.md section 6, with diffrax.

1. Pre-equilibrate: the serum-starved, drug-free steady state (L = L_b), found from
   `network.initial_guess()` by integrating `warmup_min` minutes (or, with
   preequilibration="ptc", by pseudo-transient continuation: backward-Euler steps of
   growing size; no gradient flows through this warm start) and polished with a Newton root solve of
   f(y) = 0, whose gradient is the implicit-function-theorem one (optimistix's ImplicitAdjoint).
2. Pretreat: drugs at their occupancies, L = L_b, for `pretreatment_min`.
3. Stimulate at t = 0: L = L_b + s_<stimulus>, drugs still on; states saved at the
   requested times (min since the stimulus).

Each phase is its own solve, so input changes fall on solve boundaries. `simulate` is a
pure function of (parameter vectors, conditions, times): jit- and vmap-able; a failed
solve or root find comes back as `ok = False` for that condition, never an exception.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from pipeline import runtime

runtime.configure()  # float64, and EQX_ON_ERROR before diffrax imports equinox (see pipeline.runtime)

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from pipeline.model import drugs, network, parameters, solver
from pipeline.model.solver import SolverSettings
from pipeline.vocabulary import DRUGS

STIMULUS_ORDER = tuple(network.STIMULUS_STRENGTH)  # one-hot columns of Conditions.stimulus


class Conditions(NamedTuple):
    """Experimental conditions as arrays; the leading axis is the condition."""

    line: jnp.ndarray  # [C] int: row of the parameter matrix (cell line) each condition uses
    stimulus: jnp.ndarray  # [C, 4] one-hot over STIMULUS_ORDER (all zero: no stimulus)
    doses_uM: jnp.ndarray  # [C, drugs] in vocabulary.DRUGS order (the drugs of pipeline/data/drugs.csv)
    pretreatment_min: jnp.ndarray  # [C]


class Simulation(NamedTuple):
    states: jnp.ndarray  # [C, T, 22]
    observables: jnp.ndarray  # [C, T, 8] in vocabulary.TARGETS order
    ok: jnp.ndarray  # [C] bool: every solve of this condition succeeded
    num_steps: jnp.ndarray  # [C] accepted + rejected solver steps of the condition (pre-equilibration not counted)


def conditions(line=None, stimulus=None, doses_uM=None, pretreatment_min=None, n: int | None = None) -> Conditions:
    """Build `Conditions` from readable pieces: stimulus names, {drug: dose} dicts, line indices."""
    n = n or len(stimulus or doses_uM or pretreatment_min or line)
    stim = np.zeros((n, len(STIMULUS_ORDER)))
    for i, s in enumerate(stimulus or ["none"] * n):
        if s != "none":
            stim[i, STIMULUS_ORDER.index(s)] = 1.0
    doses = np.zeros((n, len(DRUGS)))
    for i, d in enumerate(doses_uM or [{}] * n):
        for drug, dose in d.items():
            if drug not in DRUGS:
                raise KeyError(f"unknown drug {drug!r}; known: {', '.join(DRUGS)}; {drugs.HOW_TO_ADD}")
            doses[i, DRUGS.index(drug)] = dose
    return Conditions(jnp.asarray(line if line is not None else np.zeros(n, int)), jnp.asarray(stim),
                      jnp.asarray(doses), jnp.asarray(pretreatment_min if pretreatment_min is not None
                                                      else np.zeros(n)))


def steady_state(p: dict, settings: SolverSettings = SolverSettings(), y0=None):
    """The starved, drug-free steady state of one line and whether it was found (`solver.steady_state`).

    y0: where the warm start (integration or continuation) begins (default `network.initial_guess()`).
    """
    args = (p, p["L_b"], jnp.zeros(len(network.OCCUPANCIES)))
    y0 = network.initial_guess() if y0 is None else y0
    return solver.steady_state(network.vector_field, y0, args, settings)


def _condition(p: dict, y_ss, stimulus, doses, pretreatment_min, times, settings: SolverSettings):
    th = network.occupancies(p, doses)
    strengths = jnp.stack([p[network.STIMULUS_STRENGTH[s]] for s in STIMULUS_ORDER])
    ligand = p["L_b"] + stimulus @ strengths
    pre = solver.solve(network.vector_field, y_ss, -pretreatment_min, 0.0, (p, p["L_b"], th),
                       diffrax.SaveAt(t1=True), settings)
    post = solver.solve(network.vector_field, pre.ys[-1], 0.0, times[-1], (p, ligand, th),
                        diffrax.SaveAt(ts=times), settings)
    ok = solver.succeeded(pre) & solver.succeeded(post)
    return post.ys, ok, pre.stats["num_steps"] + post.stats["num_steps"]


@functools.partial(jax.jit, static_argnames="settings")
def simulate(values, conds: Conditions, times, settings: SolverSettings = SolverSettings()) -> Simulation:
    """Simulate every condition.

    values: [lines, P] natural-scale parameter vectors in `parameters.names()` order (one row per cell line).
    conds: `Conditions` with C entries; times: [C, T] nondecreasing minutes since the stimulus (pad by repeating).
    """
    values = jnp.atleast_2d(values)
    ps = jax.vmap(network.as_dict)(values)
    y_ss, ss_ok = jax.vmap(lambda p: steady_state(p, settings))(ps)
    p_c = jax.tree_util.tree_map(lambda a: a[conds.line], ps)
    states, ok, steps = jax.vmap(lambda p, y0, s, d, pre, ts: _condition(p, y0, s, d, pre, ts, settings))(
        p_c, y_ss[conds.line], conds.stimulus, conds.doses_uM, conds.pretreatment_min, jnp.asarray(times))
    obs = jax.vmap(network.observables)(states, p_c)
    return Simulation(states, obs, ok & ss_ok[conds.line], steps)


def nominal_values(overrides: dict[str, float] | None = None) -> jnp.ndarray:
    """The nominal parameter vector with some values replaced (e.g. `network.loop_overrides(...)`)."""
    return jnp.asarray(parameters.as_array({**parameters.nominal(), **(overrides or {})}))
