"""Read and validate a blot dataset folder (format v1, see data/README.md).

`check(folder)` reads `dataset.yaml`, `conditions.csv` and `measurements.csv`
and returns every problem it finds, each naming file, row, column, value and fix,
together with the typed tables when there are no errors. Nothing here writes.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import vocabulary as v
from pipeline.model.drugs import HOW_TO_ADD
from pipeline.problems import WARNING, InputError, Problem, display_path, errors, one_of
from pipeline.yamlschema import read_yaml, validate

ROW = "row"  # column of the typed tables holding the spreadsheet row (header = row 1)

_NUMBER = {"number", "positive", "nonnegative"}


@dataclass(frozen=True)
class BlotDataset:
    """A validated dataset: its metadata and typed tables (with a `row` column pointing into the files)."""

    folder: Path
    meta: dict
    conditions: pd.DataFrame  # one row per condition, columns of vocabulary.CONDITION_COLUMNS + drug doses
    measurements: pd.DataFrame  # one row per band; `loading` NaN where absent; `replicate` 1 where absent
    drugs: tuple[str, ...]  # the drugs with a dose column, in vocabulary.DRUGS order
    warnings: tuple[Problem, ...] = ()


def load(folder: str | Path) -> BlotDataset:
    """The validated dataset, or `InputError` carrying every problem found."""
    dataset, problems = check(folder)
    if dataset is None:
        raise InputError(problems)
    return dataset


def check(folder: str | Path) -> tuple[BlotDataset | None, list[Problem]]:
    """All problems of a dataset folder; the dataset too when none of them is an error."""
    folder = Path(folder)
    shown = display_path(folder)
    if not folder.is_dir():
        return None, [Problem(shown, "is not a folder" if folder.exists() else "dataset folder not found",
                              fix="give the folder that holds dataset.yaml, conditions.csv and measurements.csv")]
    meta, problems = _check_meta(folder / v.DATASET_YAML)
    conditions, drugs, known_ids, cond_problems = _check_conditions(folder / v.CONDITIONS_CSV)
    measurements, meas_problems = _check_measurements(folder / v.MEASUREMENTS_CSV, known_ids)
    problems += cond_problems + meas_problems
    if meta is not None and conditions is not None:
        problems += _check_reference_line(meta, conditions, folder)
    if conditions is not None and measurements is not None and not errors(problems):
        problems += _check_design(meta, conditions, measurements, folder)
    order = {display_path(folder / name): i for i, name in enumerate(
        (v.DATASET_YAML, v.CONDITIONS_CSV, v.MEASUREMENTS_CSV))}
    problems.sort(key=lambda p: (order.get(p.file, -1), p.row or 0))
    if errors(problems):
        return None, problems
    dataset = BlotDataset(folder, meta, conditions, measurements, drugs, tuple(problems))
    return dataset, problems


# ---------------------------------------------------------------- dataset.yaml


def _check_meta(path: Path) -> tuple[dict | None, list[Problem]]:
    raw, problems = read_yaml(path)
    if problems:
        return None, problems
    shown = display_path(path)
    if not isinstance(raw, dict):
        return None, [Problem(shown, "must be a mapping of keys to values",
                              fix="write 'name:', 'description:', 'reference_line:' and 'provenance:' lines")]
    meta, problems = validate(raw, "dataset", shown)
    return (None if problems else meta), problems


def _check_reference_line(meta: dict, conditions: pd.DataFrame, folder: Path) -> list[Problem]:
    lines = sorted(conditions[v.CELL_LINE].unique())
    if meta["reference_line"] in lines:
        return []
    return [Problem(display_path(folder / v.DATASET_YAML), f"does not occur in the {v.CELL_LINE} column of "
                    f"{v.CONDITIONS_CSV}", key="reference_line", value=meta["reference_line"],
                    fix=one_of(lines, meta["reference_line"]))]


# ---------------------------------------------------------------- CSV reading


def read_table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[Problem]]:
    """Header and rows (spreadsheet row number, column -> stripped text) of a CSV file.

    Accepts a UTF-8 BOM and Windows or old Mac line endings; skips blank lines.
    Problems: missing/empty/undecodable file, blank or repeated column names, a row
    with a wrong number of fields, a file with no data rows.
    """
    shown = display_path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        return [], [], [Problem(shown, what, fix="create it (see data/README.md for its columns)")]
    try:
        data = path.read_bytes()
    except OSError as e:
        return [], [], [Problem(shown, f"cannot be read ({e.strerror})", fix="check the file's permissions")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        row = data[: e.start].count(b"\n") + 1
        return [], [], [Problem(shown, f"is not UTF-8 text (byte {data[e.start]:#04x})", row=row,
                                fix="save it from your spreadsheet as 'CSV UTF-8 (comma delimited)'")]
    if not text.strip():
        return [], [], [Problem(shown, "is empty", fix="add a header row and one row per entry (see data/README.md)")]
    if "\x00" in text:
        row = text[: text.index("\x00")].count("\n") + 1
        return [], [], [Problem(shown, "contains a NUL byte (is it a binary file, e.g. .xlsx?)", row=row,
                                fix="export the sheet as CSV")]
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[Problem] = []
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            row = reader.line_num
            if header is None:
                header = [c.strip() for c in cells]
                problems += _check_header(header, shown)
                continue
            if len(cells) != len(header):
                problems.append(Problem(shown, f"has {len(cells)} fields but the header has {len(header)}", row=row,
                                        fix="make every row have one value per column (quote values containing commas)"))
                continue
            rows.append((row, {name: cell.strip() for name, cell in zip(header, cells)}))
    except csv.Error as e:
        problems.append(Problem(shown, f"is not valid CSV ({e})", row=reader.line_num,
                                fix="correct the quoting on that row"))
    if header is not None and not rows and not problems:
        problems.append(Problem(shown, "has a header but no data rows", fix="add one row per entry"))
    return header or [], rows, problems


def _check_header(header: list[str], shown: str) -> list[Problem]:
    problems = []
    if len(header) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs")):
            if sep in header[0]:
                problems.append(Problem(shown, f"is separated by {name}, not commas", row=1,
                                        fix="save it as comma-separated CSV"))
    seen = set()
    for i, name in enumerate(header, start=1):
        if not name:
            problems.append(Problem(shown, f"column {i} has no name", row=1,
                                    fix="name the column or delete it"))
        elif name in seen:
            problems.append(Problem(shown, "appears twice in the header", row=1, column=name,
                                    fix="keep one column of that name"))
        seen.add(name)
    return problems


def _check_columns(header: list[str], required, allowed, shown: str, unknown_fix) -> list[Problem]:
    problems = [Problem(shown, "is missing", row=1, column=name, fix=f"add a '{name}' column (see data/README.md)")
                for name in required if name not in header]
    problems += [Problem(shown, "is not a known column", row=1, column=name, fix=unknown_fix(name))
                 for name in header if name and name not in allowed]
    return problems


# ---------------------------------------------------------------- cell parsing


def _parse(rows, column: str, kind: str, shown: str, problems: list[Problem], *, choices=(), blank_ok=False) -> dict:
    """Parse one column of every row; bad cells become problems. Returns row -> value for the good cells.

    A column absent from the header gives no values (its absence is reported by `_check_columns`).
    """
    out = {}
    for row, cells in rows:
        raw = cells.get(column)
        if raw is None:
            return out
        if raw == "":
            if not blank_ok:
                problems.append(Problem(shown, "is blank", row=row, column=column, fix=_fix_blank(column)))
            continue
        value, message, fix = _convert(raw, kind, choices)
        if message:
            problems.append(Problem(shown, message, row=row, column=column, value=raw, fix=fix))
        else:
            out[row] = value
    return out


def _convert(raw: str, kind: str, choices) -> tuple[object, str, str]:
    """(value, error message, fix); the message is empty when the text is good."""
    if kind == "text":
        return raw, "", ""
    if kind == "choice":
        if raw in choices:
            return raw, "", ""
        return None, "is not a known value", one_of(choices, raw)
    if kind == "integer":
        try:
            value = int(raw)
        except ValueError:
            return None, "is not a whole number", "write an integer such as 1, 2, 3"
        return (value, "", "") if value >= 1 else (None, "must be 1 or more", "number replicates 1, 2, 3, ...")
    try:
        value = float(raw)
    except ValueError:
        hint = " (no commas: write 0.5, not 0,5, and 1500, not 1,500)" if "," in raw else ""
        return None, "is not a number", "write a plain number such as 0.5 or 1e-3" + hint
    if not math.isfinite(value):
        return None, "is not a finite number", "write a finite number, or delete the row if the band was not quantified"
    if kind == "positive" and value <= 0:
        return None, "must be > 0", "signals and loadings are background-subtracted intensities > 0; " \
                                    "delete the row if the band was undetectable"
    if kind == "nonnegative" and value < 0:
        return None, "must be >= 0", "write a value of 0 or more"
    return value, "", ""


def _fix_blank(column: str) -> str:
    if column.endswith(v.DOSE_SUFFIX):
        return "write 0 where the drug was not added"
    return "fill it in"


# ---------------------------------------------------------------- conditions.csv


def _check_conditions(path: Path) -> tuple[pd.DataFrame | None, tuple[str, ...], list[str] | None, list[Problem]]:
    """(table or None, drugs, the condition ids that could be read or None, problems)."""
    shown = display_path(path)
    header, rows, problems = read_table(path)
    if not header:
        return None, (), None, problems
    drugs = tuple(d for d in v.DRUGS if v.dose_column(d) in header)
    allowed = set(v.CONDITION_COLUMNS) | {v.dose_column(d) for d in v.DRUGS}

    def unknown_fix(name: str) -> str:
        if name.endswith(v.DOSE_SUFFIX):
            return f"'{name[:-len(v.DOSE_SUFFIX)]}' is not a known drug: " + \
                one_of([v.dose_column(d) for d in v.DRUGS], name, limit=len(v.DRUGS)) + f"; {HOW_TO_ADD}"
        guess = one_of(sorted(allowed), name).partition(" (did you mean")[1:]
        return one_of(list(v.CONDITION_COLUMNS) + [v.dose_column("<drug>")]) + "".join(guess) + \
            f"; drugs: {', '.join(v.DRUGS)}; doses are in uM"

    problems += _check_columns(header, v.CONDITION_COLUMNS, allowed, shown, unknown_fix)
    ids = _parse(rows, v.CONDITION_ID, "text", shown, problems)
    lines = _parse(rows, v.CELL_LINE, "text", shown, problems)
    stimuli = _parse(rows, v.STIMULUS, "choice", shown, problems, choices=v.STIMULI)
    concs = _parse(rows, v.STIMULUS_CONC, "nonnegative", shown, problems)
    pretreat = _parse(rows, v.PRETREATMENT_MIN, "nonnegative", shown, problems)
    doses = {d: _parse(rows, v.dose_column(d), "nonnegative", shown, problems) for d in drugs}

    first_row: dict[str, int] = {}
    for row, cells in rows:
        cid = ids.get(row)
        if cid is not None:
            if cid in first_row:
                problems.append(Problem(shown, f"repeats the condition_id of row {first_row[cid]}", row=row,
                                        column=v.CONDITION_ID, value=cid, fix="give every condition its own id"))
            else:
                first_row[cid] = row
        stim, conc, raw = stimuli.get(row), concs.get(row), cells.get(v.STIMULUS_CONC)
        conc_problem = None
        if stim == "none" and conc is not None and conc > 0:
            conc_problem = "is > 0 but the stimulus is 'none'", "write 0, or name the stimulus"
        elif stim not in (None, "none") and conc == 0:
            conc_problem = (f"is 0 but the stimulus is '{stim}'",
                            "write the stimulus concentration (nM; % for FBS), or write 'none' as the stimulus")
        elif stim == "FBS" and conc is not None and conc > 100:
            conc_problem = "is over 100 % FBS", "FBS is given in % (v/v), e.g. 10"
        if conc_problem:
            problems.append(Problem(shown, conc_problem[0], row=row, column=v.STIMULUS_CONC, value=raw,
                                    fix=conc_problem[1]))
        for d in drugs:
            dose = doses[d].get(row)
            if dose is not None and dose > v.MAX_PLAUSIBLE_DOSE_UM:
                problems.append(Problem(shown, f"is above {v.MAX_PLAUSIBLE_DOSE_UM:g} uM", row=row,
                                        column=v.dose_column(d), value=cells[v.dose_column(d)], severity=WARNING,
                                        fix="doses are in uM: check it was not entered in nM"))
    known = [cells[v.CONDITION_ID] for _, cells in rows] if v.CONDITION_ID in header else None
    if errors(problems):
        return None, drugs, known, problems
    table = pd.DataFrame({
        ROW: [r for r, _ in rows],
        v.CONDITION_ID: [ids[r] for r, _ in rows],
        v.CELL_LINE: [lines[r] for r, _ in rows],
        v.STIMULUS: [stimuli[r] for r, _ in rows],
        v.STIMULUS_CONC: [concs[r] for r, _ in rows],
        v.PRETREATMENT_MIN: [pretreat[r] for r, _ in rows],
        **{v.dose_column(d): [doses[d][r] for r, _ in rows] for d in drugs},
    })
    return table, drugs, known, problems


# ---------------------------------------------------------------- measurements.csv


def _check_measurements(path: Path, known_ids: list[str] | None) -> tuple[pd.DataFrame | None, list[Problem]]:
    shown = display_path(path)
    header, rows, problems = read_table(path)
    if not header:
        return None, problems
    allowed = v.MEASUREMENT_REQUIRED + v.MEASUREMENT_OPTIONAL
    problems += _check_columns(header, v.MEASUREMENT_REQUIRED, allowed, shown, lambda name: one_of(allowed, name))
    blots = _parse(rows, v.BLOT_ID, "text", shown, problems)
    cids = _parse(rows, v.CONDITION_ID, "text", shown, problems)
    times = _parse(rows, v.TIME_MIN, "nonnegative", shown, problems)
    targets = _parse(rows, v.TARGET, "choice", shown, problems, choices=v.TARGETS)
    signals = _parse(rows, v.SIGNAL, "positive", shown, problems)
    has_loading, has_replicate = v.LOADING in header, v.REPLICATE in header
    loadings = _parse(rows, v.LOADING, "positive", shown, problems, blank_ok=True) if has_loading else {}
    replicates = _parse(rows, v.REPLICATE, "integer", shown, problems) if has_replicate else {}

    if known_ids:  # (a conditions.csv without rows is reported there)
        known_set = set(known_ids)
        for row, cid in cids.items():
            if cid not in known_set:
                problems.append(Problem(shown, f"is not a condition_id of {v.CONDITIONS_CSV}", row=row,
                                        column=v.CONDITION_ID, value=cid, fix=one_of(known_ids, cid)))

    if has_loading:  # a blot is either loading-normalised in every lane or in none
        with_loading = {blots[r] for r in loadings if r in blots}
        for row, cells in rows:
            if cells[v.LOADING] == "" and blots.get(row) in with_loading:
                problems.append(Problem(shown, f"is blank, but other rows of blot '{blots[row]}' have one",
                                        row=row, column=v.LOADING,
                                        fix="give the lane's loading control, or leave it blank on the whole blot"))

    first_row: dict[tuple, int] = {}
    for row, _ in rows:
        key = (blots.get(row), cids.get(row), times.get(row), targets.get(row), replicates.get(row, 1))
        if None in key:
            continue
        if key in first_row:
            problems.append(Problem(shown, f"is the same band as row {first_row[key]} (same blot, condition, time, "
                                    "target and replicate)", row=row, column=v.SIGNAL,
                                    fix="number replicates with the 'replicate' column, or delete the duplicate"))
        else:
            first_row[key] = row

    # every blot x target needs a usable value to identify its scale (checked once the columns are all there)
    groups: dict[tuple, list[int]] = {}
    for row, _ in rows if set(v.MEASUREMENT_REQUIRED) <= set(header) else ():
        if row in blots and row in targets:
            groups.setdefault((blots[row], targets[row]), []).append(row)
    for (blot, target), members in sorted(groups.items()):
        usable = [r for r in members if r in signals and r in times and r in cids]
        if not usable:
            problems.append(Problem(shown, f"blot '{blot}' x target '{target}' has no usable value (rows "
                                    f"{_rows(members)})", column=v.SIGNAL, fix="correct the signals of those rows"))
        elif len(usable) == 1:
            problems.append(Problem(shown, f"blot '{blot}' x target '{target}' has a single band: its blot scale "
                                    "absorbs it, so it carries no information", row=usable[0], column=v.TARGET,
                                    value=target, severity=WARNING,
                                    fix="quantify more lanes of that blot for this target, or drop the band"))

    if errors(problems):
        return None, problems
    table = pd.DataFrame({
        ROW: [r for r, _ in rows],
        v.BLOT_ID: [blots[r] for r, _ in rows],
        v.CONDITION_ID: [cids[r] for r, _ in rows],
        v.TIME_MIN: [times[r] for r, _ in rows],
        v.TARGET: [targets[r] for r, _ in rows],
        v.SIGNAL: [signals[r] for r, _ in rows],
        v.LOADING: [loadings.get(r, math.nan) for r, _ in rows],
        v.REPLICATE: [replicates.get(r, 1) for r, _ in rows],
    })
    return table, problems


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:8])
    return shown + (f", ... ({len(rows)} in all)" if len(rows) > 8 else "")


# ---------------------------------------------------------------- design-level warnings


def _check_design(meta, conditions: pd.DataFrame, measurements: pd.DataFrame, folder: Path) -> list[Problem]:
    problems = []
    cond_file = display_path(folder / v.CONDITIONS_CSV)
    measured = set(measurements[v.CONDITION_ID])
    for row, cid in zip(conditions[ROW], conditions[v.CONDITION_ID]):
        if cid not in measured:
            problems.append(Problem(cond_file, "has no measurement", row=row, column=v.CONDITION_ID, value=cid,
                                    severity=WARNING, fix="add its bands to measurements.csv, or delete the row"))
    if meta is None:
        return problems
    line_of = dict(zip(conditions[v.CONDITION_ID], conditions[v.CELL_LINE]))
    lines_on_blot = measurements.assign(line=measurements[v.CONDITION_ID].map(line_of)).groupby(v.BLOT_ID)["line"]
    shared = set()
    for _, blot_lines in lines_on_blot:
        names = set(blot_lines)
        if meta["reference_line"] in names:
            shared |= names
    for line in sorted(set(line_of.values()) - shared - {meta["reference_line"]}):
        problems.append(Problem(display_path(folder / v.MEASUREMENTS_CSV),
                                f"cell line '{line}' never shares a blot with the reference line "
                                f"'{meta['reference_line']}': differences between the lines are confounded with "
                                "the blot scales", column=v.BLOT_ID, severity=WARNING,
                                fix="run parental and resistant lysates on the same membranes"))
    return problems
