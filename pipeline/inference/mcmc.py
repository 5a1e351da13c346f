"""NUTS (numpyro) on a model of the `pipeline.inference.engine` interface, started from the best MAP fits.

The numpyro model has one site, `u` (flat, improper), and a factor: the model's log density;
where a solve fails the factor is -inf, so the proposal is rejected
(numpyro ends that trajectory as divergent) and the run goes on.

Chains run one after another in one process (`sequential`), vmapped in one run (`vectorized`: the best on a GPU),
or each in its own worker process (`processes`: on a multi-core CPU, where one chain's solves keep only one core
busy; each worker builds the model again and compiles its own kernel, and a chain draws exactly what it draws
under `sequential`). `auto` (the default) picks by device: `vectorized` on a GPU, `processes` on a CPU with more
than one core, else `sequential`. Vectorized chains are sharded over the local devices (several GPUs;
`Sampler.devices`, `placed`) when their number divides the chains: the starting points and keys are placed
chain-wise on a one-axis device mesh and the compiled kernel keeps that layout, so each device runs its share of
the chains (draws agree with one device to round-off; the failure count is exact in total, but the devices'
callbacks interleave, so its split over chains is not). numpyro's own `parallel` (pmap over host devices) fails
inside lineax's LU solve of the stiff solver, so it is not offered. Every evaluation's success is reported to the
host through `jax.debug.callback`, so failures are counted per chain, for warmup and sampling apart. With
chain_method "sequential" the chains run one after another in one compiled kernel, so each count is exact; with
"vectorized" the callback is unrolled over the chains in order, and a chain whose trajectory already ended still
evaluates (and may count) the points the others need: its count is an upper bound.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from numpyro.infer import MCMC, NUTS

SITE = "u"  # the one numpyro sample site: the unconstrained vector of `Model.coords`
FIELDS = ("diverging", "num_steps", "accept_prob", "potential_energy", "energy", "adapt_state.step_size")


class Draws(NamedTuple):
    u: np.ndarray  # [chains, draws, D]
    stats: dict  # FIELDS -> [chains, draws] (sampling phase)
    warmup_steps: np.ndarray  # [chains] leapfrog steps (= gradient evaluations) spent in warmup
    failures_warmup: np.ndarray  # [chains] solver failures while warming up
    failures: np.ndarray  # [chains] solver failures while sampling
    wall_warmup_s: float
    wall_sampling_s: float
    method: str = "nuts"  # the sampler that drew them (`sampler.method`)


def chain_method(cfg: dict) -> str:
    """The `sampler.chain_method` to run: the config's, or for `auto` the one that suits this device."""
    if cfg["chain_method"] != "auto":
        return cfg["chain_method"]
    if cfg["chains"] == 1:
        return "sequential"
    if jax.default_backend() == "gpu":
        return "vectorized"
    return "processes" if (os.cpu_count() or 1) > 1 else "sequential"


class _FailureCounter:
    def __init__(self, chains: int):
        self.chains, self.calls, self.chain = chains, 0, None
        self.counts = np.zeros(chains, dtype=int)

    def __call__(self, ok):
        index = self.chain if self.chain is not None else self.calls % self.chains
        self.calls += 1
        if not bool(ok):
            self.counts[index] += 1

    def take(self) -> np.ndarray:
        out, self.counts, self.calls = self.counts.copy(), np.zeros(self.chains, dtype=int), 0
        return out


class Sampler:
    """A compiled NUTS kernel for one model; `run` may be called again (same shapes) without recompiling."""

    def __init__(self, model, cfg: dict, inverse_mass_matrix=None):
        self.model, self.cfg = model, cfg
        self.counter = _FailureCounter(cfg["chains"])
        self.method = chain_method(cfg)
        self.vectorized = self.method == "vectorized" and cfg["chains"] > 1
        self.devices = jax.local_devices()  # vectorized chains are sharded over these (when they divide the chains)

        def density(log_y):
            u = numpyro.sample(SITE, dist.ImproperUniform(dist.constraints.real_vector, (), (model.dim,)))
            lp, ok = model.log_density(u, log_y)
            jax.debug.callback(self.counter, ok)
            numpyro.factor("log_density", jnp.where(ok, lp, -jnp.inf))

        # numpyro checks a model's initial point before it takes ours: point that check at ours too
        self._init_values = {SITE: jnp.zeros(model.dim)}
        kernel = NUTS(density, init_strategy=numpyro.infer.init_to_value(values=self._init_values),
                      target_accept_prob=cfg["target_accept"], max_tree_depth=cfg["max_tree_depth"],
                      dense_mass=cfg["dense_mass"], adapt_mass_matrix=cfg["adapt_mass"],
                      inverse_mass_matrix=None if inverse_mass_matrix is None else
                      {(SITE,): jnp.asarray(inverse_mass_matrix)})
        # the data are an argument of the compiled kernel (jit_model_args), so `run` on other data of the same
        # design does not compile again
        self.mcmc = MCMC(kernel, num_warmup=cfg["warmup"], num_samples=cfg["samples"],
                         num_chains=cfg["chains"] if self.vectorized else 1, chain_method="vectorized",
                         progress_bar=cfg["progress"], jit_model_args=True)

    def run(self, key, inits: np.ndarray, warmup: int | None = None, samples: int | None = None,
            log_y=None, chain_keys=None) -> Draws:
        """inits: [chains, D] starting points; warmup, samples: override the config's lengths; log_y: other data
        of the same design (default: the model's); chain_keys: [chains] keys used instead of splitting `key`."""
        self.log_y = self.model.log_y if log_y is None else jnp.asarray(log_y)
        self._init_values[SITE] = jnp.asarray(inits[0])
        chains = self.cfg["chains"]
        self.mcmc.num_warmup = warmup or self.cfg["warmup"]
        self.mcmc.num_samples = samples or self.cfg["samples"]
        keys = jax.random.split(key, chains) if chain_keys is None else jnp.asarray(chain_keys)
        if self.method == "processes" and chains > 1:
            raise ValueError("chain_method 'processes' runs through mcmc.run_in_processes")
        if self.vectorized:  # one run of all chains; the counter tells them apart by call order
            self.counter.chain = None
            parts = [self._one(*placed(keys, jnp.asarray(inits), devices=self.devices))]
            warm_f, fail = parts[0][3], parts[0][4]
        else:  # one run per chain; the counter books everything on chain c
            parts = []
            for c in range(chains):
                self.counter.chain = c
                parts.append(self._one(keys[c], jnp.asarray(inits[c])))
            warm_f = np.array([p[3][c] for c, p in enumerate(parts)])
            fail = np.array([p[4][c] for c, p in enumerate(parts)])
        cat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
        return Draws(
            u=cat([p[0] for p in parts]),
            stats={k: cat([p[1][k] for p in parts]) for k in FIELDS},
            warmup_steps=cat([p[2] for p in parts]),
            failures_warmup=warm_f, failures=fail,
            wall_warmup_s=sum(p[5] for p in parts), wall_sampling_s=sum(p[6] for p in parts))

    def _one(self, key, init):
        t0 = time.perf_counter()
        self.counter.take()
        # warmup collects the same fields as sampling: with the progress bar on and warmup == samples, numpyro's
        # compiled iteration then serves both phases (one compile of the NUTS kernel instead of two)
        self.mcmc.warmup(key, self.log_y, init_params={SITE: init}, extra_fields=FIELDS, collect_warmup=True)
        warm_steps = np.asarray(self.mcmc.get_extra_fields(group_by_chain=True)["num_steps"]).sum(axis=1)
        fail_warm = self.counter.take()
        t1 = time.perf_counter()
        self.mcmc.run(self.mcmc.post_warmup_state.rng_key, self.log_y, extra_fields=FIELDS)
        u = np.asarray(self.mcmc.get_samples(group_by_chain=True)[SITE])
        fields = {k: np.asarray(v) for k, v in self.mcmc.get_extra_fields(group_by_chain=True).items()}
        fail = self.counter.take()
        return u, fields, warm_steps, fail_warm, fail, t1 - t0, time.perf_counter() - t1


def placed(*arrays, devices=None):
    """The arrays (leading axis: chains), sharded chain-wise over the devices (default: the local ones) where
    there are several and their number divides the chains (else as they are)."""
    devices = jax.local_devices() if devices is None else devices
    if len(devices) < 2 or arrays[0].shape[0] % len(devices):
        return arrays
    sharding = NamedSharding(Mesh(np.array(devices), ("chain",)), PartitionSpec("chain"))
    return tuple(jax.device_put(a, sharding) for a in arrays)


def run_in_processes(make_model: Callable, model_args: tuple, cfg: dict, inverse_mass, key,
                     inits: np.ndarray) -> Draws:
    """`Sampler(make_model(*model_args), cfg, inverse_mass).run(key, inits)` with each chain in its own
    process (at most one per core); make_model must be a module-level function (it is pickled by name)."""
    chains = cfg["chains"]
    keys = np.asarray(jax.random.split(key, chains))
    one = {**cfg, "chains": 1, "chain_method": "sequential"}
    workers = min(chains, os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_chain, make_model, model_args, one, inverse_mass, keys[c], inits[c])
                   for c in range(chains)]
        parts = [f.result() for f in futures]
    cat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
    return Draws(u=cat([p.u for p in parts]), stats={k: cat([p.stats[k] for p in parts]) for k in FIELDS},
                 warmup_steps=cat([p.warmup_steps for p in parts]),
                 failures_warmup=cat([p.failures_warmup for p in parts]), failures=cat([p.failures for p in parts]),
                 wall_warmup_s=max(p.wall_warmup_s for p in parts),
                 wall_sampling_s=max(p.wall_sampling_s for p in parts))


def _chain(make_model, model_args, cfg, inverse_mass, key, init) -> Draws:
    """One chain in a worker process, with the key it has under `sequential`."""
    return Sampler(make_model(*model_args), cfg, inverse_mass).run(None, init[None], chain_keys=key[None])
