"""NUTS (numpyro) on a model of the `pipeline.inference.engine` interface, started from the best MAP fits.

The numpyro model has one site, `u` (flat, improper), and a factor: the model's log density;
where a solve fails the factor is -inf, so the proposal is rejected
(numpyro ends that trajectory as divergent) and the run goes on.

Chains run one after another in one process (`sequential`), vmapped in one run (`vectorized`: the best on a GPU),
or each in its own worker process (`processes`: on a multi-core CPU, where one chain's solves keep only one core
busy; each worker builds the model again and compiles its own kernel, and a chain draws exactly what it draws
under `sequential`; at most `workers` at a time, `fit --workers`, default one per core). `auto` (the default)
picks by device: `vectorized` on a GPU, `processes` on a CPU where more than one worker is allowed, else
`sequential`. Vectorized chains are sharded over the local devices (several GPUs;
`Sampler.devices`, `placed`) when their number divides the chains: the starting points and keys are placed
chain-wise on a one-axis device mesh and the compiled kernel keeps that layout, so each device runs its share of
the chains (draws agree with one device to round-off; the failure count is exact in total, but the devices'
callbacks interleave, so its split over chains is not). numpyro's own `parallel` (pmap over host devices) fails
inside lineax's LU solve of the stiff solver, so it is not offered. Every evaluation's success is reported to the
host through `jax.debug.callback`, so failures are counted per chain, for warmup and sampling apart. With
chain_method "sequential" the chains run one after another in one compiled kernel, so each count is exact; with
"vectorized" the callback is unrolled over the chains, and a chain whose trajectory already ended still
evaluates (and may count) the points the others need: its count is an upper bound, and its split over the chains
varies a little from run to run (the callbacks of one step come in no fixed order); the total does not.

Chunks: a run goes in chunks, warmup's and then the draws', each started from the numpyro state the previous
one left (`post_warmup_state = last_state`; numpyro adapts while the state's iteration is below num_warmup),
taken through the host. With numpyro's progress bar on (`sampler.progress`, which numpyro itself turns off under
CI) numpyro compiles one iteration per chunk length, so all chunks have one length (`chunk_length`: the greatest
common divisor of the phases and of `sampler.checkpoint_every`); without it numpyro compiles each chunk's whole
loop, and a program with host callbacks is never cached, so each phase is one chunk. Chunked draws are those of
numpyro's own `warmup` then `run` in one piece (checked on the CPU, with the progress bar on and off, and on a GPU
with 8 vectorized chains).

Checkpoints (`pipeline.inference.checkpoint`, `fit --checkpoint`): each chunk is saved with the draws and counts
so far; a killed run resumes at its last save and draws what an uninterrupted run draws, bit for bit.

Pilot mass matrix (`sampler.mass_init: pilot`): warmup starts from the MAP's Laplace metric with numpyro's
windowed mass adaptation off; the draws of the warmup iterations in `sampler.pilot_window` are kept (in the
checkpoint too) and at its end each chain's inverse mass matrix becomes their covariance (`pilot_mass`), and
the step size is adapted again for the rest of warmup (`with_pilot_mass`). This is Stan's windowed adaptation
with one long window started from a good metric; on the curved posteriors of the full model it gains about
5-fold in ESS per gradient over the Laplace metric (benchmarks/README.md).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
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
from numpyro.infer.hmc_util import _initialize_mass_matrix, dual_averaging

from pipeline.inference import checkpoint

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


def chain_method(cfg: dict, workers: int | None = None) -> str:
    """The `sampler.chain_method` to run: the config's, or for `auto` the one that suits this device and the
    worker processes allowed (`fit --workers`, what a Snakemake rule's threads give; default: one per core)."""
    if cfg["chain_method"] != "auto":
        return cfg["chain_method"]
    if cfg["chains"] == 1:
        return "sequential"
    if jax.default_backend() == "gpu":
        return "vectorized"
    workers = (os.cpu_count() or 1) if workers is None else workers
    return "processes" if workers > 1 else "sequential"


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
                      dense_mass=cfg["dense_mass"],
                      adapt_mass_matrix=cfg["adapt_mass"] and cfg.get("mass_init") != "pilot",
                      inverse_mass_matrix=None if inverse_mass_matrix is None else
                      {(SITE,): jnp.asarray(inverse_mass_matrix)})
        # the data are an argument of the compiled kernel (jit_model_args), so `run` on other data of the same
        # design does not compile again
        self.mcmc = MCMC(kernel, num_warmup=cfg["warmup"], num_samples=cfg["samples"],
                         num_chains=cfg["chains"] if self.vectorized else 1, chain_method="vectorized",
                         progress_bar=cfg["progress"], jit_model_args=True)

    def run(self, key, inits: np.ndarray, warmup: int | None = None, samples: int | None = None,
            log_y=None, chain_keys=None, checkpoints: list | None = None) -> Draws:
        """inits: [chains, D] starting points; warmup, samples: override the config's lengths; log_y: other data
        of the same design (default: the model's); chain_keys: [chains] keys used instead of splitting `key`;
        checkpoints: where to save and resume from (`checkpoint.plan`: one for vectorized chains, else one per
        chain), None: no saves (the draws are the same)."""
        self.log_y = self.model.log_y if log_y is None else jnp.asarray(log_y)
        self._init_values[SITE] = jnp.asarray(inits[0])
        chains = self.cfg["chains"]
        self.mcmc.num_warmup = warmup or self.cfg["warmup"]
        self.mcmc.num_samples = samples or self.cfg["samples"]
        keys = jax.random.split(key, chains) if chain_keys is None else jnp.asarray(chain_keys)
        if self.method == "processes" and chains > 1:
            raise ValueError("chain_method 'processes' runs through mcmc.run_in_processes")
        if checkpoints is not None and len(checkpoints) != (1 if self.vectorized else chains):
            raise ValueError("give one checkpoint for vectorized chains, else one per chain")
        ck = checkpoints or [None] * chains
        if self.vectorized:  # one run of all chains; the counter tells them apart by call order
            self.counter.chain = None
            parts = [self._one(*placed(keys, jnp.asarray(inits), devices=self.devices), ck[0])]
        else:  # one run per chain; the counter books everything on chain c
            parts = []
            for c in range(chains):
                self.counter.chain = c
                parts.append(self._one(keys[c], jnp.asarray(inits[c]), ck[c]))
        return joined(parts)

    def _one(self, key, init, ck=None) -> Draws:
        """One numpyro run (a chain, or all vectorized chains; arrays: that many chains) as chunks of draws (see
        the module's docstring): warmup, then sampling. With a checkpoint `ck` each chunk is saved, and the run
        resumed from `ck` where it holds this run's state (`checkpoint.load`). The draws are the same however the
        run is chunked, and the same as numpyro's own `warmup` then `run` (tests/test_resume.py)."""
        warmup, samples = self.mcmc.num_warmup, self.mcmc.num_samples
        window = pilot_window(self.cfg, warmup)
        every = chunk_length(warmup, samples, window, self.cfg.get("checkpoint_every") if ck is not None else None,
                             self.mcmc.progress_bar)
        start = self._start(key, init)  # (resuming too: numpyro's kernel is then set up before the first chunk)
        saved = checkpoint.load(ck)[0] if ck is not None else None
        if saved is None or (saved["warmup"], saved["samples"]) != (warmup, samples):
            saved = start
        while saved["warmed"] < warmup or saved["done"] < samples:
            saved = self._chunk(saved, every, window)
            if ck is not None:
                checkpoint.save(ck, saved)
        self.mcmc.num_samples = samples
        cat = lambda xs: np.concatenate(xs, axis=1)  # noqa: E731 (chunks: along the draws)
        return Draws(u=cat(saved["u"]), stats={k: cat(saved["fields"][k]) for k in FIELDS},
                     warmup_steps=saved["warmup_steps"], failures_warmup=saved["failures_warmup"],
                     failures=saved["failures"], wall_warmup_s=saved["wall_warmup_s"],
                     wall_sampling_s=saved["wall_sampling_s"])

    def _start(self, key, init) -> dict:
        """The run before its first iteration: the kernel's initial state at `init` (on the host) and no draws."""
        t0 = time.perf_counter()
        self._failures()
        state = self.mcmc.sampler.init(key, self.mcmc.num_warmup, {SITE: init}, model_args=(self.log_y,),
                                       model_kwargs={})
        fail = self._failures()  # (the initial point's evaluations: counted in warmup, as numpyro's warmup does)
        return {"warmup": self.mcmc.num_warmup, "samples": self.mcmc.num_samples, "warmed": 0, "done": 0,
                "state": jax.device_get(state), "u": [], "fields": {k: [] for k in FIELDS}, "pilot_u": [],
                "warmup_steps": np.zeros(len(fail), dtype=int), "failures_warmup": fail,
                "failures": np.zeros_like(fail), "wall_warmup_s": time.perf_counter() - t0, "wall_sampling_s": 0.0}

    def _chunk(self, saved: dict, every: int, window: tuple[int, int] | None = None) -> dict:
        """`saved` with its next chunk run: up to `every` iterations (0: the rest of the phase) of warmup while it
        lasts, else of sampling; a chunk of warmup ends at the pilot window's ends. The window's draws are kept,
        and at its end the mass matrix becomes their covariance (`with_pilot_mass`)."""
        warming = saved["warmed"] < saved["warmup"]
        left = saved["warmup"] - saved["warmed"] if warming else saved["samples"] - saved["done"]
        n = min(every or left, left)
        if warming and window is not None:
            n = min([n] + [cut - saved["warmed"] for cut in window if cut > saved["warmed"]])
        t0 = time.perf_counter()
        state = jax.tree.map(jnp.asarray, saved["state"])
        if self.vectorized:  # (on several devices: sharded chain-wise, as the starting points were)
            state = jax.tree.map(lambda x: placed(x, devices=self.devices)[0], state)
        self.mcmc.post_warmup_state = state
        self.mcmc.num_samples = n
        self._failures()
        self.mcmc.run(state.rng_key, self.log_y, extra_fields=FIELDS)
        fields = {k: np.asarray(v) for k, v in self.mcmc.get_extra_fields(group_by_chain=True).items()}
        u = np.asarray(self.mcmc.get_samples(group_by_chain=True)[SITE])
        out = {**saved, "state": jax.device_get(self.mcmc.last_state)}
        wall = time.perf_counter() - t0
        if warming:
            out = {**out, "warmed": saved["warmed"] + n, "warmup_steps": saved["warmup_steps"] + fields[
                "num_steps"].sum(axis=1), "failures_warmup": saved["failures_warmup"] + self._failures(),
                "wall_warmup_s": saved["wall_warmup_s"] + wall}
            if window is not None and window[0] <= saved["warmed"] < window[1]:
                out["pilot_u"] = saved["pilot_u"] + [u]
                if out["warmed"] == window[1]:
                    out["state"] = with_pilot_mass(out["state"], np.concatenate(out["pilot_u"], axis=1),
                                                   self.cfg["dense_mass"], batched=self.vectorized)
            return out
        return {**out, "done": saved["done"] + n, "u": saved["u"] + [u],
                "fields": {k: saved["fields"][k] + [fields[k]] for k in FIELDS},
                "failures": saved["failures"] + self._failures(), "wall_sampling_s": saved["wall_sampling_s"] + wall}

    def _failures(self) -> np.ndarray:
        """The solver failures counted since the last call, of this run's chains (one chain: [1])."""
        counts = self.counter.take()
        c = self.counter.chain
        return counts if c is None else counts[c:c + 1]


def pilot_window(cfg: dict, warmup: int) -> tuple[int, int] | None:
    """With `mass_init: pilot`, the warmup iterations [a, b) whose draws give the mass matrix (the config's
    `pilot_window`, fractions of warmup); else None."""
    if cfg.get("mass_init") != "pilot":
        return None
    a, b = (int(round(f * warmup)) for f in cfg["pilot_window"])
    if not 0 <= a < b < warmup or b - a < 3:
        raise ValueError(f"sampler.pilot_window {cfg['pilot_window']} of {warmup} warmup iterations is [{a}, {b}): "
                         "it needs 3 or more draws and warmup iterations after it (to adapt the step size to the new "
                         "mass matrix); give more warmup or a wider window")
    return a, b


def chunk_length(warmup: int, samples: int, window, checkpoint_every: int | None, progress: bool,
                 most: int = 100) -> int:
    """Iterations per numpyro run (0: the rest of a phase). With the progress bar numpyro compiles one iteration
    per run length, so every run has one length: the greatest common divisor of the phases (warmup, or its parts
    around the pilot window, and the draws) and of `checkpoint_every` where the run is saved, unless that makes
    more than `most` runs (each costs a transfer through the host); then each phase is one run, cut at the pilot
    window's ends. Without the bar numpyro compiles each run whole, so there is one run per phase."""
    if not progress:
        return 0
    cuts = [0, *(window or ()), warmup]
    lengths = [b - a for a, b in zip(cuts, cuts[1:])] + [samples] + ([checkpoint_every] if checkpoint_every else [])
    g = math.gcd(*lengths)
    return g if (warmup + samples) // g <= most else 0


def pilot_mass(u: np.ndarray, shrink: float = 5.0) -> np.ndarray:
    """The inverse mass matrix from one chain's pilot draws u [n, D]: their covariance, shrunk towards its
    diagonal with weight shrink / (n + shrink) as Stan regularises its windowed estimate (Stan shrinks towards
    1e-3 I; the diagonal keeps each coordinate's own scale), so that it is positive definite even where a
    coordinate never moved. (Ledoit-Wolf shrinkage, tried, conditions it no better for HMC at 3 to 20 draws
    per dimension: tests/test_posterior.py.)"""
    u = np.asarray(u, dtype=float)
    n = u.shape[0]
    cov = np.atleast_2d(np.cov(u, rowvar=False))
    var = np.maximum(np.diag(cov), 1e-12 * max(np.diag(cov).max(), 1e-12))
    w = n / (n + shrink)
    return w * cov + (1 - w) * np.diag(var)


def with_pilot_mass(state, u: np.ndarray, dense: bool, batched: bool):
    """numpyro's NUTS state with each chain's inverse mass matrix set to `pilot_mass` of its draws u
    [chains, n, D] (dense, or its diagonal) and its step-size adaptation started again from its step size, as
    numpyro does at the end of a mass-matrix window."""
    ss_init = dual_averaging()[0]
    site = [(SITE,)] if dense else []

    def one(inv, step_size):
        inv = inv if dense else jnp.diag(inv)
        mass = _initialize_mass_matrix({SITE: jnp.zeros(inv.shape[-1])}, {(SITE,): inv}, site)
        return mass, ss_init(jnp.log(10 * step_size))

    adapt = state.adapt_state
    inv = jnp.asarray(np.stack([pilot_mass(x) for x in u]))
    mass, ss = jax.vmap(one)(inv, adapt.step_size) if batched else one(inv[0], adapt.step_size)
    adapt = adapt._replace(inverse_mass_matrix=mass[0], mass_matrix_sqrt=mass[1], mass_matrix_sqrt_inv=mass[2],
                           ss_state=ss)
    return jax.device_get(state._replace(adapt_state=adapt))


def joined(parts: list[Draws]) -> Draws:
    """The draws of runs of some chains each, as one (their chains in order; wall times: summed)."""
    cat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
    return Draws(u=cat([p.u for p in parts]), stats={k: cat([p.stats[k] for p in parts]) for k in FIELDS},
                 warmup_steps=cat([p.warmup_steps for p in parts]),
                 failures_warmup=cat([p.failures_warmup for p in parts]), failures=cat([p.failures for p in parts]),
                 wall_warmup_s=sum(p.wall_warmup_s for p in parts),
                 wall_sampling_s=sum(p.wall_sampling_s for p in parts))


def placed(*arrays, devices=None):
    """The arrays (leading axis: chains), sharded chain-wise over the devices (default: the local ones) where
    there are several and their number divides the chains (else as they are)."""
    devices = jax.local_devices() if devices is None else devices
    if len(devices) < 2 or arrays[0].shape[0] % len(devices):
        return arrays
    sharding = NamedSharding(Mesh(np.array(devices), ("chain",)), PartitionSpec("chain"))
    return tuple(jax.device_put(a, sharding) for a in arrays)


def run_in_processes(make_model: Callable, model_args: tuple, cfg: dict, inverse_mass, key,
                     inits: np.ndarray, checkpoints: list | None = None, workers: int | None = None) -> Draws:
    """`Sampler(make_model(*model_args), cfg, inverse_mass).run(key, inits, checkpoints=checkpoints)` with each
    chain in its own process, at most `workers` at a time (default: one per core); make_model must be a
    module-level function (it is pickled by name). Each worker saves and resumes its own chain's checkpoint."""
    chains = cfg["chains"]
    keys = np.asarray(jax.random.split(key, chains))
    one = {**cfg, "chains": 1, "chain_method": "sequential"}
    ck = checkpoints or [None] * chains
    workers = min(chains, workers or os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_chain, make_model, model_args, one, inverse_mass, keys[c], inits[c], ck[c])
                   for c in range(chains)]
        parts = [f.result() for f in futures]
    return joined(parts)._replace(wall_warmup_s=max(p.wall_warmup_s for p in parts),
                                  wall_sampling_s=max(p.wall_sampling_s for p in parts))


def _chain(make_model, model_args, cfg, inverse_mass, key, init, ck=None) -> Draws:
    """One chain in a worker process, with the key it has under `sequential`."""
    return Sampler(make_model(*model_args), cfg, inverse_mass).run(
        None, init[None], chain_keys=key[None], checkpoints=None if ck is None else [ck])


def _exit_with_parent(parent: int) -> None:
    """A worker ends when the process that started it is gone (killed: kill -9 leaves its workers running their
    chains, and writing their checkpoints, beside the rerun's)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
