"""The simulation protocol of model-spec.md section 6, with diffrax.

1. Pre-equilibrate: the serum-starved, drug-free steady state (L = L_b), found by
   integrating `warmup_min` minutes from `network.initial_guess()` (no gradient flows
   through this warm start) and polishing with a Newton root solve of f(y) = 0, whose
   gradient is the implicit-function-theorem one (optimistix's ImplicitAdjoint).
2. Pretreat: drugs at their occupancies, L = L_b, for `pretreatment_min`.
3. Stimulate at t = 0: L = L_b + s_<stimulus>, drugs still on; states saved at the
   requested times (min since the stimulus).

Each phase is its own solve, so input changes fall on solve boundaries. `simulate` is a
pure function of (parameter vectors, conditions, times): jit- and vmap-able; a failed
solve or root find comes back as `ok = False` for that condition, never an exception.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from pipeline import network, parameters
from pipeline.vocabulary import DRUGS

jax.config.update("jax_enable_x64", True)

STIMULUS_ORDER = tuple(network.STIMULUS_STRENGTH)  # one-hot columns of Conditions.stimulus


@dataclass(frozen=True)
class SolverSettings:
    """Numerics, separate from the equations (defaults: the fastest settings that pass the tests)."""

    solver: str = "Kvaerno5"  # a diffrax implicit solver: Kvaerno3/4/5, KenCarp3/4/5
    root_finder: str = "VeryChord"  # the implicit stages' nonlinear solver: VeryChord (diffrax's), Chord, Newton
    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 4096
    adjoint: str = "checkpoint"  # "checkpoint" (reverse mode) or "forward" (forward-mode sensitivities)
    warmup_min: float = 3000.0  # integration before the Newton polish of the steady state
    steady_rtol: float = 1e-10
    steady_atol: float = 1e-12
    steady_tol: float = 1e-8  # max |f(y*)| for the steady state to count as found


class Conditions(NamedTuple):
    """Experimental conditions as arrays; the leading axis is the condition."""

    line: jnp.ndarray  # [C] int: row of the parameter matrix (cell line) each condition uses
    stimulus: jnp.ndarray  # [C, 4] one-hot over STIMULUS_ORDER (all zero: no stimulus)
    doses_uM: jnp.ndarray  # [C, 8] in vocabulary.DRUGS order
    pretreatment_min: jnp.ndarray  # [C]


class Simulation(NamedTuple):
    states: jnp.ndarray  # [C, T, 22]
    observables: jnp.ndarray  # [C, T, 8] in vocabulary.TARGETS order
    ok: jnp.ndarray  # [C] bool: every solve of this condition succeeded


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
            doses[i, DRUGS.index(drug)] = dose
    return Conditions(jnp.asarray(line if line is not None else np.zeros(n, int)), jnp.asarray(stim),
                      jnp.asarray(doses), jnp.asarray(pretreatment_min if pretreatment_min is not None
                                                      else np.zeros(n)))


def _solver(settings: SolverSettings):
    if settings.root_finder == "VeryChord":
        return getattr(diffrax, settings.solver)()
    root_finder = getattr(optx, settings.root_finder)(rtol=settings.rtol, atol=settings.atol)
    return getattr(diffrax, settings.solver)(root_finder=root_finder)


def _adjoint(settings: SolverSettings):
    if settings.adjoint == "forward":
        return diffrax.ForwardMode()
    if settings.adjoint == "checkpoint":
        return diffrax.RecursiveCheckpointAdjoint()
    raise ValueError(f"unknown adjoint {settings.adjoint!r}: use 'checkpoint' or 'forward'")


def _solve(y0, t0, t1, args, saveat, settings: SolverSettings):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(network.vector_field), _solver(settings), t0, t1, None, y0, args=args, saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=settings.rtol, atol=settings.atol),
        max_steps=settings.max_steps, adjoint=_adjoint(settings), throw=False)


def steady_state(p: dict, settings: SolverSettings = SolverSettings(), y0=None):
    """The starved, drug-free steady state and whether it was found (residual below `steady_tol`).

    y0: where the warm-up integration starts (default `network.initial_guess()`).
    """
    args = (p, p["L_b"], jnp.zeros(len(network.OCCUPANCIES)))
    warm = _solve(network.initial_guess() if y0 is None else y0, 0.0, settings.warmup_min, jax.lax.stop_gradient(args),
                  diffrax.SaveAt(t1=True), dataclasses.replace(settings, adjoint="checkpoint"))
    y_warm = jax.lax.stop_gradient(warm.ys[-1])
    root = optx.root_find(lambda y, a: network.vector_field(0.0, y, a),
                          optx.Newton(rtol=settings.steady_rtol, atol=settings.steady_atol),
                          y_warm, args, throw=False, max_steps=64)
    residual = jnp.max(jnp.abs(network.vector_field(0.0, root.value, args)))
    ok = (warm.result == diffrax.RESULTS.successful) & (root.result == optx.RESULTS.successful) \
        & (residual < settings.steady_tol)
    return root.value, ok


def _condition(p: dict, y_ss, stimulus, doses, pretreatment_min, times, settings: SolverSettings):
    th = network.occupancies(p, doses)
    strengths = jnp.stack([p[network.STIMULUS_STRENGTH[s]] for s in STIMULUS_ORDER])
    pre = _solve(y_ss, -pretreatment_min, 0.0, (p, p["L_b"], th), diffrax.SaveAt(t1=True), settings)
    ligand = p["L_b"] + stimulus @ strengths
    post = _solve(pre.ys[-1], 0.0, times[-1], (p, ligand, th), diffrax.SaveAt(ts=times), settings)
    ok = (pre.result == diffrax.RESULTS.successful) & (post.result == diffrax.RESULTS.successful)
    return post.ys, ok


def simulate(values, conds: Conditions, times, settings: SolverSettings = SolverSettings()) -> Simulation:
    """Simulate every condition.

    values: [lines, P] natural-scale parameter vectors in `parameters.names()` order (one row per cell line).
    conds: `Conditions` with C entries; times: [C, T] nondecreasing minutes since the stimulus (pad by repeating).
    """
    values = jnp.atleast_2d(values)
    ps = jax.vmap(network.as_dict)(values)
    y_ss, ss_ok = jax.vmap(lambda p: steady_state(p, settings))(ps)
    p_c = jax.tree_util.tree_map(lambda a: a[conds.line], ps)
    states, ok = jax.vmap(lambda p, y0, s, d, pre, ts: _condition(p, y0, s, d, pre, ts, settings))(
        p_c, y_ss[conds.line], conds.stimulus, conds.doses_uM, conds.pretreatment_min, jnp.asarray(times))
    obs = jax.vmap(network.observables)(states, p_c)
    return Simulation(states, obs, ok & ss_ok[conds.line])


def nominal_values(overrides: dict[str, float] | None = None) -> jnp.ndarray:
    """The nominal parameter vector with some values replaced (e.g. `network.loop_overrides(...)`)."""
    return jnp.asarray(parameters.as_array({**parameters.nominal(), **(overrides or {})}))
