"""Shared test set-up.

Compiled programs: the in-process tests use the CLI's persistent compilation cache (pipeline.cli sets
JAX_COMPILATION_CACHE_DIR, default ~/.cache/pipeline/jax, before JAX is imported here), so a program one
xdist worker compiled is loaded, not compiled again, by the other worker, by the CLI's subprocesses and after
the caches are cleared below.
"""

import gc

import pipeline.cli  # noqa: F401  (sets JAX_COMPILATION_CACHE_DIR; must come before `import jax`)

import jax
import pytest


def _memory_maps() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to watch
        return 0


def _map_limit() -> int:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65530


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop jax's compiled programs after a test module once the worker holds a third of the kernel's limit on
    memory maps. Each XLA:CPU executable holds maps of its own, and one xdist worker that keeps every program of
    the suite reaches vm.max_map_count (65530 by default), past which LLVM segfaults mid-compile (measured: one
    module, tests/test_posterior.py, adds ~27000 maps; clearing drops them to ~1500). Clearing after every module
    instead cost the suite its reuse of programs across modules."""
    yield
    if _memory_maps() > _map_limit() // 3:
        jax.clear_caches()
        gc.collect()
