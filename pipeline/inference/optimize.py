"""Multi-start maximum a posteriori (MAP) fits: optax L-BFGS from prior draws, all starts in one vmap.

Each iteration takes the L-BFGS direction (`optax.scale_by_lbfgs`), capped at length 1 (a prior
standard deviation in every coordinate of `pipeline.model.posterior.Model`), and backtracks by halving
until the Armijo condition holds, every start at once: the only compiled ODE function is one
vmapped value-and-gradient, shared by all starts and trial steps (and by `hessian`), which keeps
compile time to one gradient's.

The Laplace shift prior's -|w| has a kink at w = 0, where a shift the data do not ask for belongs.
Plain L-BFGS zigzags across it and never meets `gtol`; the steps are therefore orthant-wise
(OWL-QN, Andrew & Gao 2007): the gradient at a kink is the subgradient of least magnitude (zero
when the data pull on w less than the prior does), the direction keeps the sign of that
pseudo-gradient, and a trial step that crosses zero stops at exactly zero.

A start whose log density cannot be evaluated at its first point (a failed solve) is dropped at
once (`failed_start`); a start that cannot find a finite, better point (`stalled`) or runs out of
iterations (`max_steps`) keeps its best point; one that converges has its largest (pseudo-)gradient
entry below `gtol`. Starts are ranked by -log p(u | data).
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pipeline.model.posterior import Model

BIG = 1e12  # the objective where the model cannot be evaluated
ARMIJO = 1e-4
MAX_HALVINGS = 12

CONVERGED, STALLED, MAX_STEPS, FAILED_START = "converged", "stalled", "max_steps", "failed_start"


class Starts(NamedTuple):
    u: np.ndarray  # [S, D] final (best) point of each start
    u0: np.ndarray  # [S, D] starting point
    objective: np.ndarray  # [S] -log posterior density (inf for dropped starts)
    max_abs_grad: np.ndarray  # [S]
    iterations: np.ndarray  # [S]
    evaluations: int  # vmapped value-and-gradient calls
    status: tuple[str, ...]  # [S]
    order: np.ndarray  # start indices, best first (dropped starts last)
    wall_s: float


def objective_fn(model: Model) -> Callable:
    """-log p(u | data) where the model can be evaluated, else BIG; objective(u, log_y=None)."""
    def objective(u, log_y=None):
        lp, ok = model.log_density(u, log_y)
        return jnp.where(ok, -lp, BIG)
    return objective


class Optimizer:
    """The compiled pieces for one model, reused by later `run` calls (also with other data)."""

    def __init__(self, model: Model):
        self.model = model
        objective = objective_fn(model)

        def value_and_grad(u, log_y):
            value, grad = jax.value_and_grad(objective)(u, log_y)
            ok = (value < BIG) & jnp.all(jnp.isfinite(grad))
            return jnp.where(ok, value, jnp.inf), jnp.where(ok, grad, 0.0)

        self.value_and_grad = jax.jit(jax.vmap(value_and_grad, in_axes=(0, None)))
        self.lbfgs = optax.scale_by_lbfgs()
        self.direction = jax.jit(jax.vmap(lambda g, state, u: self.lbfgs.update(g, state, u)))
        self.init = jax.jit(jax.vmap(self.lbfgs.init))


def pseudo_gradient(g: np.ndarray, u: np.ndarray, model: Model) -> np.ndarray:
    """The gradient g of -log p at u, [S, D], except where u_i = 0 on a kink coordinate (prior term -|u_i|):
    there the subgradient of least magnitude, which is zero when the rest of the gradient is within +-1."""
    kink = model.kink_mask
    if not kink.any():
        return g
    smooth = g + model.kink_gradient(u)  # objective = -log p
    least = np.where(smooth > 1.0, smooth - 1.0, np.where(smooth < -1.0, smooth + 1.0, 0.0))
    return np.where(kink & (u == 0), least, g)


def run(model: Model, key, starts: int, steps: int, gtol: float, log: Callable[[str], None] = print,
        log_y=None, optimizer: Optimizer | None = None) -> Starts:
    t0 = time.perf_counter()
    opt = optimizer or Optimizer(model)
    log_y = model.log_y if log_y is None else jnp.asarray(log_y)
    u = np.asarray(jax.vmap(model.prior_draw)(jax.random.split(key, starts)))
    u0 = u.copy()
    log(f"MAP: {starts} starts from the prior, {model.dim} coordinates, at most {steps} L-BFGS iterations "
        f"(the first call compiles)")
    f, g = map(np.asarray, opt.value_and_grad(jnp.asarray(u), log_y))
    evaluations = 1
    status = np.where(np.isfinite(f), "", FAILED_START).astype(object)
    iterations = np.zeros(starts, dtype=int)
    state = opt.init(jnp.asarray(u))
    kink = model.kink_mask
    for it in range(steps):
        pg = pseudo_gradient(g, u, model)
        gmax = np.max(np.abs(pg), axis=1) if pg.size else np.zeros(starts)
        status[(status == "") & (gmax < gtol)] = CONVERGED
        active = status == ""
        if not active.any():
            break
        d, state_new = opt.direction(jnp.asarray(pg), state, jnp.asarray(u))
        d = -np.asarray(d)  # optax's update is H g, to be subtracted
        d = np.where(kink & (d * pg >= 0), 0.0, d)  # at the kinks: only along the pseudo-gradient's descent
        d = np.where(np.sum(d * pg, axis=1, keepdims=True) < 0, d, -pg)  # a descent direction, else steepest
        orthant = np.where(u != 0, np.sign(u), np.sign(-pg))
        alpha = np.minimum(1.0, 1.0 / np.maximum(np.linalg.norm(d, axis=1), 1e-300))
        pending = active.copy()
        u_new, f_new, g_new = u.copy(), f.copy(), g.copy()
        for _ in range(MAX_HALVINGS):
            trial = np.where(pending[:, None], u + alpha[:, None] * d, u)
            trial = np.where(kink & (np.sign(trial) != orthant), 0.0, trial)  # stop at a kink, not across it
            ft, gt = map(np.asarray, opt.value_and_grad(jnp.asarray(trial), log_y))
            evaluations += 1
            good = pending & np.isfinite(ft) & (ft <= f + ARMIJO * np.sum(pg * (trial - u), axis=1))
            u_new[good], f_new[good], g_new[good] = trial[good], ft[good], gt[good]
            pending &= ~good
            alpha = np.where(pending, alpha / 2, alpha)
            if not pending.any():
                break
        moved = active & ~pending
        status[active & pending] = STALLED
        keep = jnp.asarray(moved)
        state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(keep.reshape((-1,) + (1,) * (new.ndim - 1)), new, old), state_new, state)
        u, f, g = u_new, f_new, g_new
        iterations[moved] = it + 1
        if it % 10 == 0 or it == steps - 1:
            done = int(np.sum(status != ""))
            best = np.min(f) if np.isfinite(f).any() else np.inf
            log(f"MAP iteration {it + 1}/{steps}: best -log p {best:.6g}; starts done {done}/{starts} "
                f"({int(np.sum(status == CONVERGED))} converged, {int(np.sum(status == FAILED_START))} failed at "
                f"the start); {time.perf_counter() - t0:.0f} s")
    status[status == ""] = MAX_STEPS
    pg = pseudo_gradient(g, u, model)
    gmax = np.max(np.abs(pg), axis=1) if pg.size else np.zeros(starts)
    objective = np.where(status == FAILED_START, np.inf, f)
    order = np.argsort(objective, kind="stable")
    log(f"MAP done in {time.perf_counter() - t0:.0f} s: best -log p {objective[order[0]]:.6g}; "
        + ", ".join(f"{k} {int(np.sum(status == k))}" for k in (CONVERGED, STALLED, MAX_STEPS, FAILED_START)))
    return Starts(u, u0, objective, gmax, iterations, evaluations, tuple(status), order, time.perf_counter() - t0)


def hessian(opt: Optimizer, u: np.ndarray, batch: int, log_y=None, rel_step: float = 1e-4) -> np.ndarray:
    """Central finite differences of the gradient of -log p at u, symmetrised: [D, D]. The 2D gradients
    run through the optimizer's compiled vmapped gradient, `batch` (its number of starts) at a time.

    The gradient of the prior's kinks (`Model.kink_gradient`: the Laplace |delta| at zero, where a MAP
    shift often lands) is taken out first: differenced across the kink it would read as a curvature of
    ~1/rel_step and pin that coordinate's mass, so NUTS would crawl along it."""
    d = u.shape[0]
    log_y = opt.model.log_y if log_y is None else jnp.asarray(log_y)
    h = rel_step * np.maximum(1.0, np.abs(u))
    points = np.concatenate([u + np.diag(h), u - np.diag(h)])
    grads = []
    for i in range(0, len(points), batch):
        chunk = points[i:i + batch]
        padded = np.concatenate([chunk, np.repeat(u[None], batch - len(chunk), axis=0)])
        grads.append(np.asarray(opt.value_and_grad(jnp.asarray(padded), log_y)[1])[:len(chunk)])
    grads = np.concatenate(grads) + np.asarray(opt.model.kink_gradient(points))  # objective = -log p
    hess = (grads[:d] - grads[d:]) / (2 * h[:, None])
    return 0.5 * (hess + hess.T)


def inverse_mass(hess: np.ndarray, floor: float = 1.0) -> np.ndarray:
    """A positive-definite inverse mass matrix from the Hessian of -log p at the MAP: its inverse with
    eigenvalues below `floor` raised to it (the coordinates have prior scale ~1, so no direction is given
    more room than the prior's) ; non-finite Hessians give the identity."""
    if not np.all(np.isfinite(hess)):
        return np.eye(hess.shape[0])
    vals, vecs = np.linalg.eigh(hess)
    return (vecs / np.maximum(vals, floor)) @ vecs.T
