"""Resumable fits: the sampler saves its state in chunks (`pipeline.inference.checkpoint`); a run stopped after
a save and started again resumes there and draws exactly what an uninterrupted run draws (in process, and a
real `kill -9` of `python -m pipeline fit`); a checkpoint of another run is never resumed; `--workers` decides
how chains run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from pipeline import cli
from pipeline.inference import checkpoint, chees, engine, mcmc
from test_petab import write_problem

SAMPLER = {"method": "nuts", "chains": 2, "warmup": 20, "samples": 40, "checkpoint_every": 10, "target_accept": 0.8,
           "max_tree_depth": 5, "dense_mass": False, "mass_init": "identity", "adapt_mass": True,
           "chain_method": "sequential", "init_tolerance": 5.0, "progress": True}


class Gaussian:
    """N(y, diag(1, 4, 9)) with a failing region (u[0] > 1.5) that proposals reach: counts to compare too."""
    dim, coords, log_y = 3, ["a", "b", "c"], jnp.array([0.0, 1.0, -1.0])

    def log_density(self, u, log_y=None):
        y = self.log_y if log_y is None else log_y
        return -0.5 * jnp.sum((u - y) ** 2 / jnp.array([1.0, 4.0, 9.0])), u[0] < 1.5


def gaussian() -> Gaussian:
    """What a `processes` worker builds (a module-level function)."""
    return Gaussian()


MAP = {"coords": Gaussian.coords, "fits": [{"log_posterior": 0.0, "u": [0.0, 1.0, -1.0]},
                                           {"log_posterior": -1.0, "u": [-0.5, 0.0, 0.0]}],
       "hessian_at_best": np.eye(3).tolist()}


class Stop(Exception):
    """A kill, in process: raised right after a save."""


@pytest.fixture(autouse=True)
def progress_bar(monkeypatch):
    """numpyro turns its progress bar off under CI and pytest-xdist, and NUTS then runs each phase as one chunk
    (see `mcmc.Sampler._one`): these tests need it on."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def _sample(path, sampler=None, seed=0, stop_after=None, monkeypatch=None, log=None):
    """engine.sample of the Gaussian; stop_after: raise Stop after that many saves."""
    if stop_after is not None:
        real, calls = checkpoint.save, []

        def save(ck, content):
            real(ck, content)
            calls.append(ck)
            if len(calls) == stop_after:
                raise Stop

        monkeypatch.setattr(checkpoint, "save", save)
    try:
        return engine.sample(Gaussian(), {"seed": seed, "sampler": {**SAMPLER, **(sampler or {})}}, MAP,
                             log=[].append if log is None else log.append, checkpoint=path)
    finally:
        if stop_after is not None:
            monkeypatch.setattr(checkpoint, "save", real)


def _same(a: mcmc.Draws, b: mcmc.Draws, per_chain: bool = True) -> None:
    """Equal draws and statistics; failure counts per chain, or (per_chain False: vectorized chains, whose
    host callbacks come in no fixed order, see `mcmc`) in total."""
    np.testing.assert_array_equal(a.u, b.u)
    for k in mcmc.FIELDS:
        np.testing.assert_array_equal(a.stats[k], b.stats[k], err_msg=k)
    np.testing.assert_array_equal(a.warmup_steps, b.warmup_steps)
    for k in ("failures_warmup", "failures"):
        x, y = getattr(a, k), getattr(b, k)
        np.testing.assert_array_equal(x if per_chain else x.sum(), y if per_chain else y.sum(), err_msg=k)


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
def test_a_stopped_run_resumes_and_draws_what_an_uninterrupted_one_draws(tmp_path, monkeypatch, chain_method):
    """Stopped right after its first chunk of draws (the third save: two warmup chunks, then one of draws),
    the run resumes there: it runs only the chunks left and its draws, statistics and failure counts equal
    an uninterrupted run's, which equal a run without checkpoints (numpyro's warmup and draws in one piece)."""
    sampler = {"chain_method": chain_method}
    whole = _sample(None, sampler)
    assert whole.failures.sum() > 0  # (the counts are compared below, so let there be some)
    saved = tmp_path / "posterior.nc.checkpoint"
    with pytest.raises(Stop):
        _sample(saved, sampler, stop_after=3, monkeypatch=monkeypatch)
    first = saved if chain_method == "vectorized" else checkpoint.chain_path(saved, 0)
    content, _ = checkpoint.load(checkpoint.Checkpoint(first, "?"))
    assert content is None  # (a fingerprint is needed to read it back)
    chunks = []
    real_chunk = mcmc.Sampler._chunk
    monkeypatch.setattr(mcmc.Sampler, "_chunk", lambda self, *a: chunks.append(1) or real_chunk(self, *a))
    log = []
    resumed = _sample(saved, sampler, log=log)
    per_chain = chain_method == "sequential"
    _same(resumed, whole, per_chain)
    per_run = (SAMPLER["warmup"] + SAMPLER["samples"]) // SAMPLER["checkpoint_every"]  # 6 chunks
    runs = 1 if chain_method == "vectorized" else SAMPLER["chains"]
    assert len(chunks) == runs * per_run - 3  # only what was left
    assert any("resuming at warmup 20/20, draws 10/40" in line for line in log), log
    _same(_sample(tmp_path / "other.checkpoint", sampler), whole, per_chain)  # uninterrupted, with saves


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
def test_a_pilot_run_stopped_inside_its_window_resumes_with_its_pilot_draws(tmp_path, monkeypatch, chain_method):
    """mass_init pilot: warmup in chunks of 5 (its window [5, 15) of 20), stopped after the second save, in
    the middle of the window; resumed, it still has the window's first draws, so its mass matrix and draws
    equal an uninterrupted run's; without checkpoints too (the same chunks)."""
    sampler = {"chain_method": chain_method, "mass_init": "pilot", "pilot_window": [0.25, 0.75], "dense_mass": True}
    whole = _sample(None, sampler)
    saved = tmp_path / "posterior.nc.checkpoint"
    with pytest.raises(Stop):
        _sample(saved, sampler, stop_after=2, monkeypatch=monkeypatch)
    log = []
    resumed = _sample(saved, sampler, log=log)
    assert any("resuming at warmup 10/20, draws 0/40" in line for line in log), log
    _same(resumed, whole, chain_method == "sequential")
    plain = _sample(None, {**sampler, "mass_init": "hessian", "adapt_mass": False})
    assert not np.array_equal(plain.u, whole.u)  # (the pilot's mass matrix made a difference)


def test_a_stopped_chees_run_resumes_after_warmup_and_draws_what_an_uninterrupted_one_draws(tmp_path, monkeypatch):
    """ChEES (vectorized chains in lockstep) saves after warmup and after each chunk of draws: stopped after its
    first chunk (the second save), it resumes without warming up again, runs the three chunks left, and its
    draws, statistics and failure counts equal an uninterrupted run's, which equal a run without checkpoints
    (the draws in one chunk)."""
    sampler = {"method": "chees", "chains": 4, "chain_method": "vectorized"}
    whole = _sample(None, sampler)
    assert whole.method == "chees" and whole.u.shape == (4, SAMPLER["samples"], 3)
    assert whole.failures.sum() + whole.failures_warmup.sum() > 0  # (compared below, so let there be some)
    saved = tmp_path / "posterior.nc.checkpoint"
    with pytest.raises(Stop):
        _sample(saved, sampler, stop_after=2, monkeypatch=monkeypatch)
    warmups, chunks = [], []
    real_warmup, real_save = chees.blackjax.chees_adaptation, checkpoint.save
    monkeypatch.setattr(chees.blackjax, "chees_adaptation", lambda *a, **k: warmups.append(1) or real_warmup(*a, **k))
    monkeypatch.setattr(checkpoint, "save", lambda *a: chunks.append(1) or real_save(*a))
    log = []
    resumed = _sample(saved, sampler, log=log)
    monkeypatch.setattr(checkpoint, "save", real_save)
    _same(resumed, whole)
    assert (len(warmups), len(chunks)) == (0, 3), (warmups, chunks)
    assert any("resuming at warmup 20/20, draws 10/40" in line for line in log), log
    _same(_sample(tmp_path / "other.checkpoint", sampler), whole)  # uninterrupted, with saves


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path, monkeypatch):
    """Stopped, then run with a changed config: the checkpoint is ignored with a message, the run starts afresh
    and draws what that config draws; the file then holds the new run."""
    saved = tmp_path / "fit.checkpoint"
    with pytest.raises(Stop):
        _sample(saved, stop_after=3, monkeypatch=monkeypatch)
    log, starts = [], []
    real_start = mcmc.Sampler._start
    monkeypatch.setattr(mcmc.Sampler, "_start", lambda self, *a: starts.append(1) or real_start(self, *a))
    changed = {"target_accept": 0.85}
    draws = _sample(saved, changed, log=log)
    monkeypatch.setattr(mcmc.Sampler, "_start", real_start)
    assert any("of another run" in line and "not resumed" in line for line in log), log
    _same(draws, _sample(None, changed))
    log = []
    _same(_sample(saved, changed, log=log), draws)  # (resumed from its last save: complete)
    assert sum("resuming at warmup 20/20, draws 40/40" in line for line in log) == 2, log
    checkpoint.remove(saved)
    assert not list(tmp_path.iterdir())


def test_the_fingerprint_holds_what_determines_the_draws():
    """`engine.checkpoints`: each chain's file has its own fingerprint; the seed, a config key, the data, a
    chain's start or the mass matrix change it (the chain's own only, for its start); the progress bar and
    `sequential` against `processes` (they draw alike) do not; vectorized chains share one file."""
    def prints(config=None, m=None, inits=None, mass=None, **sampler):
        config = config or {"seed": 0, "sampler": SAMPLER}
        run = {**config["sampler"], **sampler}
        saves = engine.checkpoints(m or Gaussian(), {**config, "sampler": run}, run, mass,
                                   np.zeros((2, 3)) if inits is None else inits, Path("f"), [].append)
        return None if saves is None else [(c.path.name, c.fingerprint) for c in saves]

    base = prints()
    assert [name for name, _ in base] == ["f.chain0", "f.chain1"] and base[0][1] != base[1][1]
    assert prints(chain_method="processes") == base and prints(progress=False) == base
    other_data = Gaussian()
    other_data.log_y = jnp.array([0.0, 1.0, -1.5])
    for other in (prints({"seed": 1, "sampler": SAMPLER}), prints(target_accept=0.85), prints(m=other_data),
                  prints(mass=np.ones(3)), prints(checkpoint_every=20)):
        assert all(a[1] != b[1] for a, b in zip(other, base))
    moved = prints(inits=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1e-9]]))
    assert moved[0] == base[0] and moved[1] != base[1]
    assert [name for name, _ in prints(chain_method="vectorized")] == ["f"]
    assert prints(checkpoint_every=0) is None and engine.checkpoints(Gaussian(), {}, {}, None, None, None, print) is None


def test_remove_deletes_the_checkpoints_files_only(tmp_path):
    path = tmp_path / "posterior.nc.checkpoint"
    mine = [path, checkpoint.chain_path(path, 0), checkpoint.chain_path(path, 11),
            tmp_path / ".posterior.nc.checkpoint.chain1.0123456789ab.part", tmp_path / ".posterior.nc.checkpoint.a1b2c3d4e5f6.part"]
    others = [tmp_path / "posterior.nc", tmp_path / "posterior.nc.checkpoint.old", tmp_path / "x.checkpoint.chain0"]
    for p in mine + others:
        p.write_text("x")
    assert sorted(checkpoint.remove(path)) == sorted(mine)
    assert sorted(tmp_path.iterdir()) == sorted(others)
    assert checkpoint.remove(tmp_path / "missing" / "f") == []


def test_workers_decide_how_chains_run(monkeypatch):
    """chain_method auto: processes only where more than one worker is allowed; run_in_processes starts at most
    min(chains, workers) and passes each chain its own checkpoint."""
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(mcmc.os, "cpu_count", lambda: 8)
    auto = {"chain_method": "auto", "chains": 2}
    assert mcmc.chain_method(auto, workers=1) == "sequential"
    assert mcmc.chain_method(auto, workers=2) == "processes"
    assert mcmc.chain_method(auto) == "processes"  # default: the cores
    assert mcmc.chain_method({**auto, "chains": 1}, workers=4) == "sequential"
    assert cli._parser().parse_args(["fit", "c.yaml", "--map", "m", "--posterior", "p", "--diagnostics", "d",
                                     "--workers", "1"]).workers == 1
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["fit", "c.yaml", "--map", "m", "--posterior", "p", "--diagnostics", "d",
                                  "--workers", "0"])

    started = []

    class InProcess:  # a ProcessPoolExecutor that runs each chain here, and records how many workers it had
        def __init__(self, max_workers, mp_context, initializer, initargs):
            started.append(max_workers)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args):
            f = Future()
            f.set_result(fn(*args))
            return f

    monkeypatch.setattr(mcmc, "ProcessPoolExecutor", InProcess)
    cfg = {**SAMPLER, "chain_method": "processes", "warmup": 10, "samples": 10}
    key, inits = jax.random.PRNGKey(0), np.zeros((2, 3))
    plan = checkpoint.plan(Path("/nonexistent/never-written"), "x", np.asarray(jax.random.split(key, 2)), inits,
                           vectorized=False)
    saves = []
    monkeypatch.setattr(checkpoint, "save", lambda ck, content: saves.append(ck.path.name))
    draws = mcmc.run_in_processes(gaussian, (), cfg, None, key, inits, checkpoints=plan, workers=1)
    assert started == [1] and draws.u.shape == (2, 10, 3)
    assert set(saves) == {"never-written.chain0", "never-written.chain1"}
    _same(draws, mcmc.Sampler(Gaussian(), {**cfg, "chain_method": "sequential"}).run(key, inits))


# ---- a real kill -------------------------------------------------------------------------------------
def _fit(folder: Path, cfg: Path, map_json: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "fit", str(cfg), "--map", str(map_json),
            "--posterior", str(folder / "posterior.nc"), "--diagnostics", str(folder / "diagnostics.json"),
            "--workers", "1"]


def _env() -> dict:
    env = {k: x for k, x in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER")}  # (progress bar: on)
    return {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def test_kill_9_mid_run_then_rerun_gives_the_uninterrupted_draws(tmp_path):
    """`python -m pipeline fit` on a PEtab problem (two chains one after another, --workers 1), killed with
    SIGKILL once its first chain has saved a chunk of draws, then run again with the same command: it resumes
    and its posterior.nc holds exactly the draws of an uninterrupted run with the same seed (run alongside);
    the checkpoint files are gone once posterior.nc is written."""
    import arviz as az

    from pipeline import api
    from pipeline.petab import fit as petabfit

    problem = write_problem(tmp_path / "problem", planted=True)
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({"analysis": "toy", "petab": str(problem), "seed": 5,
                                   "solver": {"rtol": 1e-8, "atol": 1e-10}, "map": {"starts": 2, "steps": 20},
                                   "sampler": {"chains": 2, "warmup": 20, "samples": 60, "checkpoint_every": 10,
                                               "max_tree_depth": 3, "chain_method": "auto", "mass_init": "identity"}}))
    m = petabfit.model(api.load_config(cfg))  # map.json by hand (the MAP is not what is tested): the nominal values
    frac = (m.problem.x_nominal - m.lower) / (m.upper - m.lower)
    map_json = tmp_path / "map.json"
    map_json.write_text(json.dumps({"coords": list(m.coords), "fits": [
        {"log_posterior": 0.0, "u": (np.log(frac) - np.log1p(-frac)).tolist()}]}))
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    chain0 = checkpoint.chain_path(killed / "posterior.nc.checkpoint", 0)
    reference = subprocess.Popen(_fit(whole, cfg, map_json), env=_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    run = subprocess.Popen(_fit(killed, cfg, map_json), env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    done = 0
    while done < 10 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        if chain0.is_file():
            content = _peek(chain0)
            done = content["done"] if content else 0
    assert run.poll() is None, "the fit ended before it could be killed"
    assert 10 <= done < 60, done
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert not (killed / "posterior.nc").exists() and chain0.is_file()
    again = subprocess.run(_fit(killed, cfg, map_json), env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"checkpoint {chain0}: resuming at warmup 20/20, draws" in again.stderr, again.stderr[-3000:]
    out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, out[-3000:]
    a, b = az.from_netcdf(killed / "posterior.nc"), az.from_netcdf(whole / "posterior.nc")
    assert a.posterior.sizes["draw"] == 60 and a.posterior.sizes["chain"] == 2
    for group in ("posterior", "sample_stats", "log_likelihood"):
        x, y = getattr(a, group), getattr(b, group)
        for name in y.data_vars:
            np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=f"{group}.{name}")
    assert json.loads((killed / "diagnostics.json").read_text())["draws"] == 60
    assert sorted(p.name for p in killed.iterdir()) == ["diagnostics.json", "posterior.nc"]
    assert sorted(p.name for p in whole.iterdir()) == ["diagnostics.json", "posterior.nc"]


def _peek(path: Path) -> dict | None:
    """A checkpoint's content without its fingerprint check (the test's view of the run's progress)."""
    import pickle

    try:
        return pickle.loads(path.read_bytes())
    except (EOFError, pickle.UnpicklingError, FileNotFoundError):
        return None
