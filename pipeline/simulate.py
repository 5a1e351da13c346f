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

import dataclasses
import functools
from dataclasses import dataclass
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from pipeline import drugs, network, parameters
from pipeline.vocabulary import DRUGS

jax.config.update("jax_enable_x64", True)

STIMULUS_ORDER = tuple(network.STIMULUS_STRENGTH)  # one-hot columns of Conditions.stimulus


@dataclass(frozen=True)
class SolverSettings:
    """Numerics, separate from the equations (defaults: the fastest settings that pass the tests;
    benchmarks/README.md compares the options)."""

    solver: str = "Kvaerno5"  # a diffrax implicit solver: Kvaerno3/4/5 (KenCarp needs an explicit/implicit split)
    root_finder: str = "Chord"  # the implicit stages' nonlinear solver: Chord, Newton (optimistix) or VeryChord (diffrax)
    root_rtol: float | None = None  # tolerances of a Chord/Newton root finder (None: the step controller's)
    root_atol: float | None = None
    rtol: float = 1e-6
    atol: float = 1e-9
    pcoeff: float = 0.0  # PIDController coefficients (diffrax's defaults: an I controller)
    icoeff: float = 1.0
    max_steps: int = 4096
    adjoint: str = "checkpoint"  # "checkpoint" (reverse mode), "forward" (forward-mode sensitivities) or "direct"
    preequilibration: str = "warmup"  # warm start of the Newton polish: "warmup" (integration) or "ptc" (pseudo-transient
    # continuation: ~15 % faster, but it missed the serum steady state of 14 of 100 prior draws, see benchmarks/README.md)
    warmup_min: float = 3000.0  # preequilibration="warmup": integration before the Newton polish
    ptc_steps: int = 200  # most pseudo-transient continuation iterations
    steady_rtol: float = 1e-10
    steady_atol: float = 1e-12
    steady_tol: float = 1e-8  # max |f(y*)| for the steady state to count as found


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


def _solver(settings: SolverSettings):
    if settings.root_finder == "VeryChord":
        return getattr(diffrax, settings.solver)()
    rtol = settings.rtol if settings.root_rtol is None else settings.root_rtol
    atol = settings.atol if settings.root_atol is None else settings.root_atol
    root_finder = getattr(optx, settings.root_finder)(rtol=rtol, atol=atol)
    return getattr(diffrax, settings.solver)(root_finder=root_finder)


def _adjoint(settings: SolverSettings):
    if settings.adjoint == "forward":
        return diffrax.ForwardMode()
    if settings.adjoint == "checkpoint":
        return diffrax.RecursiveCheckpointAdjoint()
    if settings.adjoint == "direct":
        return diffrax.DirectAdjoint()
    raise ValueError(f"unknown adjoint {settings.adjoint!r}: use 'checkpoint', 'forward' or 'direct'")


def _solve(y0, t0, t1, args, saveat, settings: SolverSettings):
    controller = diffrax.PIDController(rtol=settings.rtol, atol=settings.atol, pcoeff=settings.pcoeff,
                                       icoeff=settings.icoeff)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(network.vector_field), _solver(settings), t0, t1, None, y0, args=args, saveat=saveat,
        stepsize_controller=controller, max_steps=settings.max_steps, adjoint=_adjoint(settings), throw=False)


def _ptc(f, y0, settings: SolverSettings):
    """Pseudo-transient continuation: backward-Euler steps y += (I/dt - J)^-1 f(y) with dt grown as the
    residual falls (switched evolution relaxation) and cut by 4 on a step that fails; returns (y, converged)."""
    eye = jnp.eye(y0.shape[0])

    def norm(y):
        r = jnp.max(jnp.abs(f(y)))
        return jnp.where(jnp.isfinite(r), r, jnp.inf)

    def body(carry):
        y, r, dt, k = carry
        step = jnp.linalg.solve(eye / dt - jax.jacfwd(f)(y), f(y))
        y_new = y + step
        r_new = norm(y_new)
        accept = r_new < 2.0 * r  # a pseudo-time step may raise the residual a little, not blow it up
        grow = jnp.clip(r / jnp.maximum(r_new, 1e-300), 0.5, 10.0)
        return (jnp.where(accept, y_new, y), jnp.where(accept, r_new, r),
                jnp.where(accept, jnp.minimum(dt * grow, 1e12), dt / 4.0), k + 1)

    def cond(carry):
        _, r, dt, k = carry
        return (r > 0.1 * settings.steady_tol) & (k < settings.ptc_steps) & (dt > 1e-8)

    y, r, _, _ = jax.lax.while_loop(cond, body, (y0, norm(y0), jnp.asarray(1.0), 0))
    return y, r <= 0.1 * settings.steady_tol


def steady_state(p: dict, settings: SolverSettings = SolverSettings(), y0=None):
    """The starved, drug-free steady state and whether it was found (residual below `steady_tol`).

    y0: where the warm start (continuation or integration) begins (default `network.initial_guess()`).
    """
    args = (p, p["L_b"], jnp.zeros(len(network.OCCUPANCIES)))
    y0 = network.initial_guess() if y0 is None else y0
    if settings.preequilibration == "ptc":
        const = jax.lax.stop_gradient(args)
        y_warm, warm_ok = _ptc(lambda y: network.vector_field(0.0, y, const), y0, settings)
    elif settings.preequilibration == "warmup":
        warm = _solve(y0, 0.0, settings.warmup_min, jax.lax.stop_gradient(args), diffrax.SaveAt(t1=True),
                      dataclasses.replace(settings, adjoint="checkpoint"))
        y_warm, warm_ok = warm.ys[-1], warm.result == diffrax.RESULTS.successful
    else:
        raise ValueError(f"unknown preequilibration {settings.preequilibration!r}: use 'warmup' or 'ptc'")
    y_warm = jax.lax.stop_gradient(y_warm)
    root = optx.root_find(lambda y, a: network.vector_field(0.0, y, a),
                          optx.Newton(rtol=settings.steady_rtol, atol=settings.steady_atol),
                          y_warm, args, throw=False, max_steps=64)
    residual = jnp.max(jnp.abs(network.vector_field(0.0, root.value, args)))
    ok = warm_ok & (root.result == optx.RESULTS.successful) & (residual < settings.steady_tol)
    return root.value, ok


def _condition(p: dict, y_ss, stimulus, doses, pretreatment_min, times, settings: SolverSettings):
    th = network.occupancies(p, doses)
    strengths = jnp.stack([p[network.STIMULUS_STRENGTH[s]] for s in STIMULUS_ORDER])
    ligand = p["L_b"] + stimulus @ strengths
    pre = _solve(y_ss, -pretreatment_min, 0.0, (p, p["L_b"], th), diffrax.SaveAt(t1=True), settings)
    post = _solve(pre.ys[-1], 0.0, times[-1], (p, ligand, th), diffrax.SaveAt(ts=times), settings)
    ok = (pre.result == diffrax.RESULTS.successful) & (post.result == diffrax.RESULTS.successful)
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
