"""ChEES-HMC (blackjax) on a model of the `pipeline.inference.engine` interface: many chains in lockstep.

Every chain takes the same jittered number of leapfrog steps per iteration (no tree building), so the chains
run as one vmapped program: a GPU evaluates all of them at once, where NUTS's `vectorized` chains wait for the
longest tree of all. Warmup adapts one step size and one trajectory length for all chains together, by dual
averaging on the acceptance rate and Adam on the ChEES criterion (Hoffman, Radul & Sountsov 2021), pooled over
the chains (the more chains, the fewer warmup iterations each needs; with 8-16 chains on the demo's posterior
it matched NUTS's ESS per gradient: benchmarks/README.md).

Geometry: the chains move in whitened coordinates z, u = u_best + L z with L L^T the starting inverse mass
matrix (`sampler.mass_init: hessian`: the MAP's Laplace approximation, dense or its diagonal), so HMC with the
identity metric in z is HMC with that mass matrix in u; `adapt_mass: true` adds blackjax's ensemble estimate
of a diagonal correction (the last half of warmup). The chains start dispersed: the MAP fits (as NUTS's) plus
a standard normal draw in z, i.e. a draw of the Laplace approximation around each fit (where that draw
solves), so that R-hat can see chains that have not mixed.

Warmup and sampling are one compiled program (one compile of the log density's gradient); their wall times
are the run's split by gradient evaluations, the compile counted in warmup's. So a ChEES run is not
checkpointed (`sampler.checkpoint_every`, `fit --checkpoint` apply to NUTS): a ChEES fit killed mid-run restarts
from warmup. Saving between chunks of draws would take a second compiled program for the draws, whose kernel
needs the trajectory-jitter functions blackjax's adaptation builds inside the first (they are not arrays, and
cannot leave it), and a second compile of the gradient.

Failures are counted inside the compiled program, without a host callback: a proposal whose end state has
a failed solve (log density -inf or NaN; a NaN position never reaches the solver) is rejected, and the count
per chain is the number of such proposals, in warmup and in sampling apart. The energy recorded per draw is
the Hamiltonian where its trajectory starts (finite when the proposal failed), what E-BFMI compares.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pipeline.inference.mcmc import Draws, placed

LEARNING_RATE = 0.025  # Adam on the trajectory length (TFP's and the ChEES paper's default)
INITIAL_STEP_SIZE = 0.5  # in whitened coordinates; dual averaging takes it from here


def whitening(inverse_mass, dim: int) -> np.ndarray:
    """L with L L^T = the inverse mass matrix (a [D, D] matrix, a [D] diagonal, or None: the identity)."""
    if inverse_mass is None:
        return np.eye(dim)
    m = np.asarray(inverse_mass, dtype=float)
    return np.diag(np.sqrt(m)) if m.ndim == 1 else np.linalg.cholesky(m)


def run(model, cfg: dict, inverse_mass, key, inits: np.ndarray, log_y=None) -> Draws:
    """cfg["chains"] ChEES-HMC chains of cfg["warmup"] + cfg["samples"] iterations started around `inits`
    ([chains, D]; the first is the centre of the whitening)."""
    chains, dim = cfg["chains"], model.dim
    if chains < 2:
        raise ValueError("sampler.method chees adapts across chains: set sampler.chains to 2 or more")
    log_y = model.log_y if log_y is None else jnp.asarray(log_y)
    centre = jnp.asarray(inits[0])
    chol = jnp.asarray(whitening(inverse_mass, dim))

    def log_density(z):
        finite = jnp.all(jnp.isfinite(z))
        lp, ok = model.log_density(centre + chol @ jnp.where(finite, z, 0.0), log_y)
        return jnp.where(finite & ok & jnp.isfinite(lp), lp, -jnp.inf)

    warmup = blackjax.chees_adaptation(
        log_density, chains, target_acceptance_rate=cfg["target_accept"],
        mass_matrix_estimation="diagonal" if cfg["adapt_mass"] else None, adaptation_info_fn=_warmup_info)

    def program(key, z_fits):
        """Start, warm up and sample, as one compiled program (one compile of the log density's gradient)."""
        key_init, key_warm, key_draw = jax.random.split(key, 3)
        jittered = z_fits + jax.random.normal(key_init, z_fits.shape)
        finite = jnp.isfinite(jax.vmap(log_density)(jittered))
        z0 = jnp.where(finite[:, None], jittered, z_fits)  # a jittered start that fails to solve keeps its fit
        (states, parameters), info = warmup.run(key_warm, z0, INITIAL_STEP_SIZE, optax.adam(LEARNING_RATE),
                                                cfg["warmup"], max_sampling_steps=cfg["samples"])
        kernel = blackjax.dynamic_hmc(log_density, **parameters)

        def one(states, k):
            before = states.logdensity
            states, inf = jax.vmap(kernel.step)(jax.random.split(k, chains), states)
            # the Hamiltonian where the trajectory starts (its momentum just drawn): finite even when the
            # proposal failed, and what E-BFMI compares across iterations
            energy = -before + 0.5 * jnp.sum(inf.momentum ** 2 * parameters["inverse_mass_matrix"], axis=-1)
            return states, (states.position, states.logdensity, inf.is_divergent, inf.num_integration_steps,
                            inf.acceptance_rate, energy, ~jnp.isfinite(inf.proposal.logdensity))

        _, out = jax.lax.scan(one, states, jax.random.split(key_draw, cfg["samples"]))
        # (blackjax wraps warmup's info in a plain class, not a pytree: its fields are taken out again)
        return parameters["step_size"], _WarmupInfo(info.steps, info.failed), out

    z_fits = jax.scipy.linalg.solve_triangular(chol, (jnp.asarray(inits) - centre).T, lower=True).T
    (z_fits,) = placed(z_fits)  # several devices: the chains are sharded over them
    t0 = time.perf_counter()
    compiled = jax.jit(program).lower(key, z_fits).compile()
    t1 = time.perf_counter()
    step_size, info, out = jax.block_until_ready(compiled(key, z_fits))
    t2 = time.perf_counter()
    z, lp, diverging, steps, accept, energy, failed = (np.swapaxes(np.asarray(x), 0, 1) for x in out)
    warm_steps = np.asarray(info.steps).sum(axis=0)
    share = warm_steps.sum() / (warm_steps.sum() + steps.sum())  # of the run's time, by gradient evaluations
    u = np.asarray(centre) + z @ np.asarray(chol).T
    step = np.full((chains, cfg["samples"]), float(step_size))
    return Draws(u=u, stats={"diverging": diverging, "num_steps": steps, "accept_prob": accept,
                             "potential_energy": -lp, "energy": energy, "adapt_state.step_size": step},
                 warmup_steps=warm_steps, failures_warmup=np.asarray(info.failed).sum(axis=0),
                 failures=failed.sum(axis=1), wall_warmup_s=t1 - t0 + share * (t2 - t1),
                 wall_sampling_s=(1 - share) * (t2 - t1), method="chees")


class _WarmupInfo(NamedTuple):  # what warmup keeps per iteration and chain
    steps: jax.Array  # leapfrog steps (= gradient evaluations)
    failed: jax.Array  # the proposal's end state failed to solve


def _warmup_info(state, info, adaptation_state):
    return _WarmupInfo(info.num_integration_steps, ~jnp.isfinite(info.proposal.logdensity))
