"""Problems found in user input, collected and reported all at once.

A `Problem` names where it is (file, spreadsheet row, column), the bad value,
what is wrong and how to fix it. Validators return lists of problems instead of
raising at the first one; `InputError` carries such a list to the CLI, which
prints one line per problem and exits with status 2.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    fix: str = ""
    row: int | None = None  # CSV: spreadsheet row number, the header is row 1
    column: str | None = None  # CSV column
    value: object = None
    severity: str = ERROR
    line: int | None = None  # YAML: line number
    key: str | None = None  # YAML: dotted key

    def __str__(self) -> str:
        where = self.file
        for label, at in (("line", self.line), ("row", self.row)):
            if at is not None:
                where += f", {label} {at}"
        for label, name in (("key", self.key), ("column", self.column)):
            if name is not None:
                where += f", {label} '{name}'"
        text = f"{self.severity}: {where}: "
        if self.value is not None:
            text += f"{_show(self.value)}: "
        text += self.message
        if self.fix:
            text += f". Fix: {self.fix}"
        return text


class InputError(Exception):
    """Bad user input: a list of problems, at least one of them an error."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def one_of(allowed, value: str | None = None, limit: int = 12) -> str:
    """A fix text: the allowed values (at most `limit` shown), and the closest one to `value`."""
    names = [str(a) for a in allowed]
    shown = names if len(names) <= limit else names[:limit] + [f"... ({len(names)} in all)"]
    text = "use one of " + ", ".join(shown)
    if value:
        close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
        guess = {n.lower(): n for n in names}.get(str(value).lower()) or (close[0] if close else None)
        if guess:
            text += f" (did you mean '{guess}'?)"
    return text


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
