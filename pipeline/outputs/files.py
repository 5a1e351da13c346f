"""Atomic output files: written beside their destination under a temporary name, then renamed.

A crash or an error while writing leaves no half-written output, and never
touches an existing good file. `write_all` is where the stages' outputs are written (the CLI's
commands and `pipeline.api.Fit.save`), in one format per type.
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
    write_all({path: obj})


NETCDF_ENGINE = "h5netcdf"


def write_all(outputs: dict) -> list[Path]:
    """Write each object to its path (a path None: skipped), all or none: each under a temporary name
    (`atomic_path`), renamed into place only when every one was written; return the paths written.
    By type: an xarray Dataset or ArviZ InferenceData as NetCDF4, a pandas DataFrame as CSV (6 significant
    digits), a dict as indented JSON, a matplotlib figure in its path's format (png, pdf, svg, ...)."""
    todo = [(Path(path), obj) for path, obj in outputs.items() if path is not None]
    with contextlib.ExitStack() as stack:
        for path, obj in todo:
            _write(obj, stack.enter_context(atomic_path(path)), path.suffix.lstrip(".") or "png")
    return [path for path, _ in todo]


def _write(obj, tmp: Path, suffix: str) -> None:
    import json

    if isinstance(obj, dict):
        tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    elif hasattr(obj, "to_netcdf"):
        obj.to_netcdf(str(tmp), engine=NETCDF_ENGINE)
    elif hasattr(obj, "to_csv"):
        obj.to_csv(tmp, index=False, float_format="%.6g")
    elif hasattr(obj, "savefig"):
        obj.savefig(tmp, dpi=110, format=suffix)
    else:
        raise TypeError(f"no file format for a {type(obj).__name__}")
