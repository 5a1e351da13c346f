"""The one solver layer: ODE numerics for the network model (`pipeline.model.simulate`) and imported PEtab models
(`pipeline.petab.problem`).

`SolverSettings` holds every numerical choice (method, tolerances, step limit, adjoint, pre-equilibration)
and is the config's `solver:` section; `solve` integrates one phase, `steady_state` finds a steady state.
Both are pure functions of arrays (jit- and vmap-able) and never raise on a failed solve: they return
diffrax's result code or an `ok` flag, which the callers turn into a rejected proposal.

Defaults are the fastest settings that keep the observables within 1e-4 of scipy's Radau reference and
pass the tests (benchmarks/README.md has the comparison): Rodas5P (`pipeline.model.rosenbrock`) at rtol 1e-4,
reverse-mode gradients through the steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline import runtime

runtime.configure()  # float64, and EQX_ON_ERROR before diffrax imports equinox (see pipeline.runtime)

import diffrax
import jax
import jax.numpy as jnp
import optimistix as optx

from pipeline.model import rosenbrock

SOLVERS = ("Rodas5P", "Kvaerno3", "Kvaerno4", "Kvaerno5")
ADJOINTS = ("checkpoint", "forward", "direct")
PREEQUILIBRATIONS = ("warmup", "ptc", "event")


@dataclass(frozen=True)
class SolverSettings:
    """Numerics, separate from the equations."""

    solver: str = "Rodas5P"  # a Rosenbrock method (one LU per step), or a diffrax ESDIRK method (Kvaerno3/4/5)
    root_finder: str = "Chord"  # Kvaerno only: the stages' nonlinear solver, Chord or Newton (optimistix), VeryChord
    root_rtol: float | None = None  # tolerances of a Chord/Newton stage solver (None: the step controller's)
    root_atol: float | None = None
    rtol: float = 1e-4
    atol: float = 1e-7
    pcoeff: float = 0.0  # PIDController coefficients (diffrax's defaults: an I controller)
    icoeff: float = 1.0
    max_steps: int = 4096
    adjoint: str = "checkpoint"  # reverse mode through the steps, forward-mode sensitivities, or "direct"
    checkpoints: int | None = None  # adjoint="checkpoint": stored steps (None: diffrax's choice from max_steps)
    preequilibration: str = "warmup"  # how `steady_state` gets near the steady state: "warmup" (integrate
    # `warmup_min`) or "ptc" (pseudo-transient continuation; both then polished by Newton), or "event"
    # (integrate until |dy/dt| < steady_atol + steady_rtol |y|, up to steady_t_max; no Newton, so conserved
    # moieties are fine: the PEtab import's choice)
    warmup_min: float = 3000.0
    ptc_steps: int = 200  # most pseudo-transient continuation iterations
    steady_rtol: float = 1e-10
    steady_atol: float = 1e-12
    steady_tol: float = 1e-8  # warmup/ptc: max |f(y*)| for the Newton steady state to count as found
    steady_t_max: float = 1e9  # event: the longest integration

    def __post_init__(self):
        for name, value, allowed in (("solver", self.solver, SOLVERS), ("adjoint", self.adjoint, ADJOINTS),
                                     ("preequilibration", self.preequilibration, PREEQUILIBRATIONS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}: use one of {', '.join(allowed)}")


def diffrax_solver(settings: SolverSettings, autonomous: bool = True):
    """The diffrax solver of the settings (autonomous: the vector field does not depend on t)."""
    if settings.solver == "Rodas5P":
        return rosenbrock.Rodas5P(autonomous=autonomous)
    if settings.root_finder == "VeryChord":
        return getattr(diffrax, settings.solver)()
    rtol = settings.rtol if settings.root_rtol is None else settings.root_rtol
    atol = settings.atol if settings.root_atol is None else settings.root_atol
    return getattr(diffrax, settings.solver)(root_finder=getattr(optx, settings.root_finder)(rtol=rtol, atol=atol))


def adjoint(settings: SolverSettings):
    if settings.adjoint == "forward":
        return diffrax.ForwardMode()
    if settings.adjoint == "direct":
        return diffrax.DirectAdjoint()
    return diffrax.RecursiveCheckpointAdjoint(checkpoints=settings.checkpoints)


def solve(vector_field, y0, t0, t1, args, saveat: diffrax.SaveAt, settings: SolverSettings, *,
          autonomous: bool = True, jump_ts=None, event: diffrax.Event | None = None) -> diffrax.Solution:
    """Integrate dy/dt = vector_field(t, y, args) from t0 to t1 (never raises: see `succeeded`).

    jump_ts: times where the vector field is discontinuous (the step controller lands on them).
    """
    controller = diffrax.PIDController(rtol=settings.rtol, atol=settings.atol, pcoeff=settings.pcoeff,
                                       icoeff=settings.icoeff)
    if jump_ts is not None and jump_ts.shape[0]:
        controller = diffrax.ClipStepSizeController(controller, jump_ts=jump_ts)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field), diffrax_solver(settings, autonomous), t0, t1, None, y0, args=args,
        saveat=saveat, stepsize_controller=controller, max_steps=settings.max_steps, adjoint=adjoint(settings),
        event=event, throw=False)


def succeeded(sol: diffrax.Solution):
    return sol.result == diffrax.RESULTS.successful


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


def _implicit(f, y_ss, y0, args, null_rtol: float = 1e-11):
    """y_ss (a steady state of f reached from y0, carrying no gradient) with the implicit-function-theorem
    gradient: dy*/dtheta solves J dy = -df/dtheta and L dy = L dy0/dtheta, where the rows of L span the left
    null space of J = df/dy at y_ss (conserved moieties, L f = 0: what stays of the initial state).

    Differentiating through an event-terminated integration instead gives wrong steady-state sensitivities
    (diffrax 0.7.2; the sensitivities have not converged when the states have; tests/test_solver.py).
    The value is y_ss unchanged: r - stop_gradient(r) is zero, only its derivative is not.
    """
    const = jax.lax.stop_gradient(args)
    jac = jax.jacfwd(lambda y: f(y, const))(y_ss)
    u, s, _ = jnp.linalg.svd(jac)
    null = s <= null_rtol * s[0]
    left = u.T * null[:, None]  # left singular vectors of zero singular values; zero rows elsewhere
    system = jnp.concatenate([jac, left])
    r = jnp.concatenate([f(y_ss, args), -(left @ y0)])
    return y_ss - jnp.linalg.pinv(system) @ (r - jax.lax.stop_gradient(r))


def steady_state(vector_field, y0, args, settings: SolverSettings, *, autonomous: bool = True):
    """(y*, ok): a steady state of dy/dt = vector_field(t, y, args) reached from y0.

    warmup/ptc: a warm start that carries no gradient, then a Newton root solve of f(y) = 0, whose gradient
    is the implicit-function-theorem one (optimistix's ImplicitAdjoint); ok needs |f(y*)| < steady_tol.
    event: integration until the steady-state event, with the implicit-function-theorem gradient (`_implicit`).
    """
    if settings.preequilibration == "event":
        event = diffrax.Event(diffrax.steady_state_event(rtol=settings.steady_rtol, atol=settings.steady_atol))
        sol = solve(vector_field, jax.lax.stop_gradient(y0), 0.0, settings.steady_t_max, jax.lax.stop_gradient(args),
                    diffrax.SaveAt(t1=True), settings, autonomous=autonomous, event=event)
        t_end = jax.lax.stop_gradient(sol.ts[-1])
        y_ss = _implicit(lambda y, a: vector_field(t_end, y, a), jax.lax.stop_gradient(sol.ys[-1]), y0, args)
        return y_ss, sol.result == diffrax.RESULTS.event_occurred
    const = jax.lax.stop_gradient(args)
    if settings.preequilibration == "ptc":
        y_warm, warm_ok = _ptc(lambda y: vector_field(0.0, y, const), y0, settings)
    else:
        warm = solve(vector_field, y0, 0.0, settings.warmup_min, const, diffrax.SaveAt(t1=True),
                     dataclasses.replace(settings, adjoint="checkpoint"), autonomous=autonomous)
        y_warm, warm_ok = warm.ys[-1], succeeded(warm)
    y_warm = jax.lax.stop_gradient(y_warm)
    root = optx.root_find(lambda y, a: vector_field(0.0, y, a),
                          optx.Newton(rtol=settings.steady_rtol, atol=settings.steady_atol),
                          y_warm, args, throw=False, max_steps=64)
    residual = jnp.max(jnp.abs(vector_field(0.0, root.value, args)))
    ok = warm_ok & (root.result == optx.RESULTS.successful) & (residual < settings.steady_tol)
    return root.value, ok
