"""Sampler checkpoints: a fit killed mid-run (a cluster's time limit, `kill -9`) resumes where it was.

A NUTS run goes in chunks (`mcmc.Sampler._one`); after each one its state is saved: the numpyro sampler state
(position, adapted step size and mass matrix, random key), the draws and counts so far, as one pickle per chain
(one for vectorized chains), replaced atomically. A run resumes from a file only if the file's fingerprint is
the run's: a digest of everything that decides the draws (the config with its `sampler:` as run, the model's
coordinates, the data, the starting mass matrix, the library versions, and per file the chain's starting point
and key), so a changed input never resumes a stale state. A chunk starts from the state the previous one left,
with its key, so a resumed run's draws equal an uninterrupted run's, bit for bit (tests/test_resume.py).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.outputs.files import atomic_path


class Checkpoint(NamedTuple):
    path: Path  # the file
    fingerprint: str  # of the run it belongs to


def environment() -> dict:
    """The versions that decide the draws besides the inputs."""
    import jax
    import numpyro

    from pipeline import __version__

    return {"pipeline": __version__, "jax": jax.__version__, "numpyro": numpyro.__version__}


def _update(h, x) -> None:
    if x is None:
        h.update(b"none")
        return
    if isinstance(x, (dict, list, tuple, str, int, float, bool)) and not isinstance(x, np.ndarray):
        try:
            h.update(json.dumps(x, sort_keys=True, default=str).encode())
            return
        except TypeError:
            pass
    a = np.ascontiguousarray(np.asarray(x))
    h.update(f"{a.shape}{a.dtype}".encode())
    h.update(a.tobytes())


def fingerprint(*parts) -> str:
    """A digest of the parts (JSON-able values and arrays)."""
    h = hashlib.sha256()
    for p in parts:
        _update(h, p)
    return h.hexdigest()


def chain_path(path: str | Path, chain: int) -> Path:
    path = Path(path)
    return path.with_name(f"{path.name}.chain{chain}")


def plan(path: str | Path, about: str, keys, inits, vectorized: bool) -> list[Checkpoint]:
    """The files of a run at `path`: one for vectorized chains, else one per chain (`<path>.chain<c>`), each
    with the run's fingerprint `about` and its own starting points and keys."""
    path = Path(path)
    if vectorized:
        return [Checkpoint(path, fingerprint(about, keys, inits))]
    return [Checkpoint(chain_path(path, c), fingerprint(about, keys[c], inits[c])) for c in range(len(inits))]


def load(ck: Checkpoint) -> tuple[dict | None, str | None]:
    """(the saved content where it is this run's, else None; a note for the log, or None where there is no file)."""
    if not ck.path.is_file():
        return None, None
    try:
        content = pickle.loads(ck.path.read_bytes())
    except Exception as e:  # (a half-written file cannot be: saves are atomic; another version's may be)
        return None, f"checkpoint {ck.path} is unreadable ({type(e).__name__}); not resumed, starting afresh"
    if not isinstance(content, dict) or content.get("fingerprint") != ck.fingerprint:
        return None, (f"checkpoint {ck.path} is of another run (its config, data, starting points, seed or "
                      "versions differ); not resumed, starting afresh")
    return content, (f"checkpoint {ck.path}: resuming at warmup {content['warmed']}/{content['warmup']}, "
                     f"draws {content['done']}/{content['samples']}")


def save(ck: Checkpoint, content: dict) -> None:
    """content (host arrays) with the run's fingerprint, replacing the file atomically."""
    with atomic_path(ck.path) as tmp:
        Path(tmp).write_bytes(pickle.dumps({**content, "fingerprint": ck.fingerprint},
                                           protocol=pickle.HIGHEST_PROTOCOL))


def remove(path: str | Path) -> list[Path]:
    """Delete the checkpoint files of the run at `path` (and any temporary file of a save); returns them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    name = re.escape(path.name)
    mine = re.compile(rf"{name}(\.chain\d+)?|\.{name}(\.chain\d+)?\.[0-9a-f]{{12}}\.part")
    gone = [p for p in path.parent.iterdir() if p.is_file() and mine.fullmatch(p.name)]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone
