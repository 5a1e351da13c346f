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

Two compiled programs: warmup (blackjax's ChEES adaptation, with the jittered starts), then the draws in chunks
of `sampler.checkpoint_every` (one program serves every chunk). With a checkpoint (`fit --checkpoint`) the run
is saved after warmup and after each chunk of draws (`checkpoint.py`), so a fit killed mid-run resumes at its
last save and draws what an uninterrupted run draws (tests/test_resume.py); killed during warmup, it warms up
again. The draws' kernel takes warmup's adapted step size, mass matrix and trajectory length as arrays (what
a checkpoint holds); its trajectory jitter is blackjax's, rebuilt here (`_jittered`). Each program's wall time
(its compile included) is its phase's.

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

from blackjax.mcmc.dynamic_hmc import halton_sequence

from pipeline.inference import checkpoint
from pipeline.inference.mcmc import Draws, placed

LEARNING_RATE = 0.025  # Adam on the trajectory length (TFP's and the ChEES paper's default)
INITIAL_STEP_SIZE = 0.5  # in whitened coordinates; dual averaging takes it from here


def whitening(inverse_mass, dim: int) -> np.ndarray:
    """L with L L^T = the inverse mass matrix (a [D, D] matrix, a [D] diagonal, or None: the identity)."""
    if inverse_mass is None:
        return np.eye(dim)
    m = np.asarray(inverse_mass, dtype=float)
    return np.diag(np.sqrt(m)) if m.ndim == 1 else np.linalg.cholesky(m)


def run(model, cfg: dict, inverse_mass, key, inits: np.ndarray, log_y=None, ck=None) -> Draws:
    """cfg["chains"] ChEES-HMC chains of cfg["warmup"] + cfg["samples"] iterations started around `inits`
    ([chains, D]; the first is the centre of the whitening). ck: a `checkpoint.Checkpoint` to save the run
    after warmup and every `checkpoint_every` draws, and to resume it from (None: no saves, the same draws)."""
    chains, dim = cfg["chains"], model.dim
    if chains < 2:
        raise ValueError("sampler.method chees adapts across chains: set sampler.chains to 2 or more")
    log_y = model.log_y if log_y is None else jnp.asarray(log_y)
    centre = jnp.asarray(inits[0])
    chol = jnp.asarray(whitening(inverse_mass, dim))
    samples = cfg["samples"]
    every = min(cfg.get("checkpoint_every") or samples, samples) if ck is not None else samples
    max_bits = int(np.ceil(np.log2(cfg["warmup"] + samples)))  # blackjax's Halton jitter for this run's length

    def log_density(z):
        finite = jnp.all(jnp.isfinite(z))
        lp, ok = model.log_density(centre + chol @ jnp.where(finite, z, 0.0), log_y)
        return jnp.where(finite & ok & jnp.isfinite(lp), lp, -jnp.inf)

    def warm(key, z_fits):
        """Start and warm up: the chains' states and the adapted parameters (arrays only, to be saved)."""
        key_init, key_warm = jax.random.split(key)
        jittered = z_fits + jax.random.normal(key_init, z_fits.shape)
        finite = jnp.isfinite(jax.vmap(log_density)(jittered))
        z0 = jnp.where(finite[:, None], jittered, z_fits)  # a jittered start that fails to solve keeps its fit
        warmup = blackjax.chees_adaptation(
            log_density, chains, target_acceptance_rate=cfg["target_accept"],
            mass_matrix_estimation="diagonal" if cfg["adapt_mass"] else None, adaptation_info_fn=_warmup_info)
        (states, parameters), info = warmup.run(key_warm, z0, INITIAL_STEP_SIZE, optax.adam(LEARNING_RATE),
                                                cfg["warmup"], max_sampling_steps=samples)
        # (blackjax wraps warmup's info in a plain class, not a pytree: its fields are taken out again)
        return states, Tuned(parameters["step_size"], parameters["inverse_mass_matrix"],
                             parameters["integration_steps_params"][0]), _WarmupInfo(info.steps, info.failed)

    def draws(states, tuned, keys, n):
        """The next n (<= every) draws from `states` with the keys [every] (the first n used), into buffers of
        `every` draws: one compiled program serves every chunk, the last shorter one too."""
        kernel = blackjax.dynamic_hmc(log_density, step_size=tuned.step_size,
                                      inverse_mass_matrix=tuned.inverse_mass_matrix,
                                      next_random_arg_fn=lambda i: i + 1, integration_steps_fn=_jittered(max_bits),
                                      integration_steps_params=(tuned.leapfrog_steps,))

        def step(states, k):
            before = states.logdensity
            states, inf = jax.vmap(kernel.step)(jax.random.split(k, chains), states)
            # the Hamiltonian where the trajectory starts (its momentum just drawn): finite even when the
            # proposal failed, and what E-BFMI compares across iterations
            energy = -before + 0.5 * jnp.sum(inf.momentum ** 2 * tuned.inverse_mass_matrix, axis=-1)
            return states, (states.position, states.logdensity, inf.is_divergent, inf.num_integration_steps,
                            inf.acceptance_rate, energy, ~jnp.isfinite(inf.proposal.logdensity))

        def one(i, carry):
            states, row = step(carry[0], keys[i])
            return states, tuple(o.at[i].set(r) for o, r in zip(carry[1], row))

        rows = jax.eval_shape(step, states, keys[0])[1]
        return jax.lax.fori_loop(0, n, one, (states, tuple(jnp.zeros((every,) + r.shape, r.dtype) for r in rows)))

    saved = checkpoint.load(ck)[0] if ck is not None else None
    if saved is None or (saved["warmup"], saved["samples"], saved["chains"]) != (cfg["warmup"], samples, chains):
        t0 = time.perf_counter()
        z_fits = jax.scipy.linalg.solve_triangular(chol, (jnp.asarray(inits) - centre).T, lower=True).T
        (z_fits,) = placed(z_fits)  # several devices: the chains are sharded over them
        key_warm, key_draw = jax.random.split(key)
        states, tuned, info = jax.block_until_ready(jax.jit(warm)(key_warm, z_fits))
        saved = {"warmup": cfg["warmup"], "samples": samples, "chains": chains, "warmed": cfg["warmup"], "done": 0,
                 "states": jax.device_get(states), "tuned": jax.device_get(tuned), "key_draw": np.asarray(key_draw),
                 "warmup_steps": np.asarray(info.steps).sum(axis=0), "failures_warmup": np.asarray(info.failed).sum(
                     axis=0), "out": [], "wall_warmup_s": time.perf_counter() - t0, "wall_sampling_s": 0.0}
        if ck is not None:
            checkpoint.save(ck, saved)
    keys = jax.random.split(jnp.asarray(saved["key_draw"]), samples)
    keys = jnp.concatenate([keys, keys[:every]])  # (a pad for the last chunk's unused tail)
    chunk = jax.jit(draws)
    while saved["done"] < samples:
        t0 = time.perf_counter()
        done, n = saved["done"], min(every, samples - saved["done"])
        states = jax.tree.map(lambda x: placed(jnp.asarray(x))[0], saved["states"])
        states, out = jax.block_until_ready(chunk(states, jax.tree.map(jnp.asarray, saved["tuned"]),
                                                  keys[done:done + every], n))
        saved = {**saved, "done": done + n, "states": jax.device_get(states),
                 "out": saved["out"] + [tuple(np.asarray(x)[:n] for x in out)],
                 "wall_sampling_s": saved["wall_sampling_s"] + time.perf_counter() - t0}
        if ck is not None:
            checkpoint.save(ck, saved)
    z, lp, diverging, steps, accept, energy, failed = (
        np.swapaxes(np.concatenate([o[k] for o in saved["out"]]), 0, 1) for k in range(7))
    u = np.asarray(centre) + z @ np.asarray(chol).T
    step = np.full((chains, samples), float(saved["tuned"].step_size))
    return Draws(u=u, stats={"diverging": diverging, "num_steps": steps, "accept_prob": accept,
                             "potential_energy": -lp, "energy": energy, "adapt_state.step_size": step},
                 warmup_steps=saved["warmup_steps"], failures_warmup=saved["failures_warmup"],
                 failures=failed.sum(axis=1), wall_warmup_s=saved["wall_warmup_s"],
                 wall_sampling_s=saved["wall_sampling_s"], method="chees")


class Tuned(NamedTuple):  # what warmup adapts, all the draws need (arrays, so that a checkpoint holds them)
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    leapfrog_steps: jax.Array  # the adapted trajectory length over the step size, before its jitter


def _jittered(max_bits: int):
    """blackjax's `chees_adaptation` jitter (a Halton sequence, jitter amount 1): the integration steps of the
    draw with this random-generator argument; rebuilt here because blackjax keeps it inside its warmup."""
    def steps(random_generator_arg, leapfrog_steps):
        jitter = halton_sequence(random_generator_arg, max_bits) * 1.0 + (1.0 - 1.0)
        return jnp.asarray(jnp.ceil(jitter * leapfrog_steps), dtype=int)
    return steps


class _WarmupInfo(NamedTuple):  # what warmup keeps per iteration and chain
    steps: jax.Array  # leapfrog steps (= gradient evaluations)
    failed: jax.Array  # the proposal's end state failed to solve


def _warmup_info(state, info, adaptation_state):
    return _WarmupInfo(info.num_integration_steps, ~jnp.isfinite(info.proposal.logdensity))
