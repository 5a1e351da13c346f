"""Atomic output files: written beside their destination under a temporary name, then renamed.

A crash or an error while writing leaves no half-written output, and never
touches an existing good file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: str | Path):
    """Yield a temporary path in the destination's folder; rename it to `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.part")  # created by the writer, so umask applies
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)



@contextlib.contextmanager
def atomic_dir(final: str | Path):
    """Yield a fresh temporary folder beside `final`; it replaces `final` (if any) only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp, old = final.with_name(f".{final.name}.{tag}.part"), final.with_name(f".{final.name}.{tag}.old")
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        for leftover in (tmp, old):
            shutil.rmtree(leftover, ignore_errors=True)


def write_json(obj: dict, path: str | Path) -> None:
    """`obj` as indented JSON, atomically."""
    import json

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
