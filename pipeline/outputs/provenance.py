"""Where an output came from, written into it: the package version, the git commit of the package's source,
the config (YAML text) and its seed, the UTC time and the command. A result file can then be traced to the
code and the settings that made it, and rerun, after it has been copied away from its results folder.

`info(config)` is the record; `stamp(obj, record)` writes it as attributes of an xarray Dataset or of every
group of an ArviZ InferenceData (NetCDF attributes: text and numbers, so a missing item is left out rather
than written as None); map.json and diagnostics.json hold it under a `provenance` key, and the report shows
it at the end of the page.

`command` is the command line when the CLI ran the stage (`pipeline.cli` sets it with `running`), else the
API function that did (`pipeline.fit_posterior`, ...).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import functools
import subprocess
from pathlib import Path

import yaml

PACKAGE_DIR = Path(__file__).resolve().parents[1]
UNKNOWN = "unknown"
KEYS = ("pipeline_version", "git_commit", "created_utc", "command", "seed", "config")  # in this order

_command: contextvars.ContextVar[str | None] = contextvars.ContextVar("pipeline_command", default=None)


@contextlib.contextmanager
def running(command: str):
    """Within the block, outputs name `command` (the CLI's command line) as what made them."""
    token = _command.set(command)
    try:
        yield
    finally:
        _command.reset(token)


def info(config: dict | None = None, call: str = "") -> dict:
    """The provenance record; `call`: the API function that makes the output, named when no CLI command runs."""
    from pipeline import __version__

    record = {"pipeline_version": __version__, "git_commit": git_commit(),
              "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": _command.get() or (f"pipeline.{call}" if call else "python")}
    if config is not None:
        record["seed"] = config.get("seed")
        record["config"] = yaml.safe_dump(config, sort_keys=False)
    return {k: record[k] for k in KEYS if record.get(k) is not None}


def stamp(obj, record: dict):
    """Add the record to the attributes of a Dataset, or of every group of an InferenceData; return obj."""
    import arviz as az

    for ds in [getattr(obj, g) for g in obj.groups()] if isinstance(obj, az.InferenceData) else [obj]:
        ds.attrs.update(record)
    return obj


def of(attrs: dict) -> dict:
    """The provenance items among a file's attributes (empty for a file written before they were recorded)."""
    return {k: attrs[k] for k in KEYS if k in attrs}


@functools.cache
def git_commit() -> str:
    """`git rev-parse HEAD` of the package's source when the package is a git checkout (the installed files are
    tracked there), with "-dirty" when they differ from that commit (`git status --porcelain` of the package's
    folder); else "unknown". Never raises; never takes git's index lock (others may be running git there)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # a site-packages copy inside some other repository: no
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return head + ("-dirty" if dirty else "") if head else UNKNOWN
