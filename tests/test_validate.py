"""`python -m pipeline validate` and `ingest` on malformed and on harmlessly varied copies of tests/data/handmade.

Every case copies the example dataset into a temporary folder, applies one small
mutation and runs the command line in a subprocess, as a user would.
"""

from __future__ import annotations

import csv
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

EXAMPLE = Path(__file__).parent / "data" / "handmade"
YAML, COND, MEAS = "dataset.yaml", "conditions.csv", "measurements.csv"
TALLY = re.compile(r"^\d+ errors?(, \d+ warnings?)?; (validate|ingest): nothing written$")


# ---------------------------------------------------------------- running the command line


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A fresh copy of tests/data/handmade, as tmp_path/ds."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "ds"))


# ---------------------------------------------------------------- mutation helpers
# Each factory returns a function of the dataset folder that edits it in place.
# Data-row index i (0-based, header excluded) is spreadsheet row i + 2.


def read_rows(folder: Path, name: str) -> list[list[str]]:
    with open(folder / name, newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f))


def write_rows(folder: Path, name: str, rows: list[list[str]], **fmt) -> None:
    with open(folder / name, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n", **fmt).writerows(rows)


def edit_rows(name: str, edit):
    """Mutation: `edit(rows)` changes the parsed rows (header first) of a CSV file, which is written back."""
    def mutate(folder: Path) -> None:
        rows = read_rows(folder, name)
        edit(rows)
        write_rows(folder, name, rows)
    return mutate


def set_cell(name: str, i: int, column: str, value: str):
    def edit(rows):
        rows[i + 1][rows[0].index(column)] = value
    return edit_rows(name, edit)


def set_cells_where(name: str, match: dict[str, str], column: str, value: str):
    """Set `column` on every data row whose cells equal `match`."""
    def edit(rows):
        cols = {c: rows[0].index(c) for c in match}
        for r in rows[1:]:
            if all(r[cols[c]] == want for c, want in match.items()):
                r[rows[0].index(column)] = value
    return edit_rows(name, edit)


def drop_column(name: str, column: str):
    def edit(rows):
        j = rows[0].index(column)
        for r in rows:
            del r[j]
    return edit_rows(name, edit)


def rename_column(name: str, old: str, new: str):
    def edit(rows):
        rows[0][rows[0].index(old)] = new
    return edit_rows(name, edit)


def add_column(name: str, column: str, value: str):
    def edit(rows):
        rows[0].append(column)
        for r in rows[1:]:
            r.append(value)
    return edit_rows(name, edit)


def add_row(name: str, like: int, **changes: str):
    """Append a copy of data row `like` with some cells changed (no changes: an exact duplicate)."""
    def edit(rows):
        new = list(rows[like + 1])
        for column, value in changes.items():
            new[rows[0].index(column)] = value
        rows.append(new)
    return edit_rows(name, edit)


def drop_last_cell(name: str, i: int):
    def edit(rows):
        rows[i + 1].pop()
    return edit_rows(name, edit)


def keep_rows(name: str, n: int):
    """Keep the header and the first n data rows."""
    def edit(rows):
        del rows[n + 1:]
    return edit_rows(name, edit)


def rewrite_csv(name: str, **fmt):
    """Same rows, other CSV dialect (e.g. delimiter=';')."""
    def mutate(folder: Path) -> None:
        write_rows(folder, name, read_rows(folder, name), **fmt)
    return mutate


def write_bytes(name: str, data: bytes):
    def mutate(folder: Path) -> None:
        (folder / name).write_bytes(data)
    return mutate


def replace_bytes(name: str, old: bytes, new: bytes):
    def mutate(folder: Path) -> None:
        path = folder / name
        data = path.read_bytes()
        assert old in data, (name, old)
        path.write_bytes(data.replace(old, new, 1))
    return mutate


def delete(name: str):
    def mutate(folder: Path) -> None:
        (folder / name).unlink()
    return mutate


def edit_yaml(**changes):
    """Set keys of dataset.yaml; a value of None deletes the key."""
    def mutate(folder: Path) -> None:
        meta = yaml.safe_load((folder / YAML).read_text(encoding="utf-8"))
        for key, value in changes.items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        (folder / YAML).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return mutate


def combine(*mutations):
    def mutate(folder: Path) -> None:
        for m in mutations:
            m(folder)
    return mutate


# ---------------------------------------------------------------- malformed inputs
# (mutation, fragments that must all occur on one `error:` line)

MALFORMED = [
    # dataset.yaml
    pytest.param(replace_bytes(YAML, b"reference_line: T47D", b"reference_line: [T47D"),
                 [YAML, "is not valid YAML"], id="yaml-syntax-error"),
    pytest.param(edit_yaml(author="me"), [YAML, "'author'", "is not a known key"], id="yaml-unknown-key"),
    pytest.param(edit_yaml(provenance=None), [YAML, "'provenance'", "is required but missing"],
                 id="yaml-missing-provenance"),
    pytest.param(edit_yaml(name=""), [YAML, "'name'", "''"], id="yaml-empty-name"),
    pytest.param(edit_yaml(format_version=2), [YAML, "'format_version'", "2"], id="yaml-format-version-2"),
    pytest.param(edit_yaml(reference_line="MCF7"),
                 [YAML, "'reference_line'", "'MCF7'", "does not occur in the cell_line column",
                  "T47D, T47D_MK2206R"], id="yaml-reference-line-absent"),
    pytest.param(write_bytes(YAML, b"- name\n- description\n"), [YAML, "must be a mapping"], id="yaml-a-list"),
    pytest.param(write_bytes(YAML, b"\n\n"), [YAML, "is empty"], id="yaml-empty-file"),
    pytest.param(replace_bytes(YAML, b"T47D", b"T47D\xb5"), [YAML, "is not UTF-8"], id="yaml-not-utf8"),
    pytest.param(delete(YAML), [YAML, "not found"], id="yaml-missing-file"),
    pytest.param(replace_bytes(YAML, b"reference_line:", b"2024: x\nreference_line:"),
                 [YAML, "2024", "is not a known key"], id="yaml-non-string-key"),
    # conditions.csv: cells
    pytest.param(set_cell(COND, 1, "stimulus", "IGF-1"),
                 [COND, "row 3", "'stimulus'", "'IGF-1'", "is not a known value", "did you mean 'IGF1'"],
                 id="cond-stimulus-unknown"),
    pytest.param(set_cell(COND, 1, "cell_line", ""), [COND, "row 3", "'cell_line'", "is blank"],
                 id="cond-cell-line-blank"),
    pytest.param(add_row(COND, 1), [COND, "row 14", "'condition_id'", "'P_IGF1'", "repeats the condition_id of row 3"],
                 id="cond-duplicate-condition-id"),
    pytest.param(set_cell(COND, 2, "stimulus_conc", "-10"), [COND, "row 4", "'stimulus_conc'", "'-10'", ">= 0"],
                 id="cond-stimulus-conc-negative"),
    pytest.param(set_cell(COND, 0, "stimulus_conc", "5"),
                 [COND, "row 2", "'stimulus_conc'", "stimulus is 'none'"], id="cond-none-with-conc"),
    pytest.param(set_cell(COND, 1, "stimulus_conc", "0"),
                 [COND, "row 3", "'stimulus_conc'", "is 0 but the stimulus is 'IGF1'"], id="cond-igf1-without-conc"),
    pytest.param(combine(set_cell(COND, 1, "stimulus", "FBS"), set_cell(COND, 1, "stimulus_conc", "150")),
                 [COND, "row 3", "'stimulus_conc'", "150", "over 100 % FBS"], id="cond-fbs-over-100"),
    pytest.param(set_cell(COND, 1, "stimulus_conc", "inf"),
                 [COND, "row 3", "'stimulus_conc'", "'inf'", "not a finite number"], id="cond-conc-infinite"),
    pytest.param(set_cell(COND, 3, "pretreatment_min", "abc"),
                 [COND, "row 5", "'pretreatment_min'", "'abc'", "is not a number"], id="cond-pretreatment-text"),
    pytest.param(set_cell(COND, 3, "pretreatment_min", "-60"),
                 [COND, "row 5", "'pretreatment_min'", "'-60'", ">= 0"], id="cond-pretreatment-negative"),
    pytest.param(set_cell(COND, 3, "MK2206_uM", "-1"), [COND, "row 5", "'MK2206_uM'", "'-1'", ">= 0"],
                 id="cond-dose-negative"),
    pytest.param(set_cell(COND, 2, "MK2206_uM", "0,1"),
                 [COND, "row 4", "'MK2206_uM'", "'0,1'", "is not a number", "no commas"], id="cond-dose-decimal-comma"),
    pytest.param(set_cell(COND, 5, "ipatasertib_uM", ""), [COND, "row 7", "'ipatasertib_uM'", "is blank"],
                 id="cond-dose-blank"),
    # conditions.csv: columns and file
    pytest.param(drop_column(COND, "stimulus_conc"), [COND, "row 1", "'stimulus_conc'", "is missing"],
                 id="cond-missing-column"),
    pytest.param(rename_column(COND, "MK2206_uM", "MK-2206_uM"),
                 [COND, "row 1", "'MK-2206_uM'", "not a known drug", "did you mean 'MK2206_uM'",
                  "AZD1208_uM", "pipeline/data/drugs.csv"],
                 id="cond-unknown-drug-column"),
    pytest.param(add_column(COND, "notes", "x"), [COND, "row 1", "'notes'", "is not a known column"],
                 id="cond-unknown-column"),
    pytest.param(rewrite_csv(COND, delimiter=";"), [COND, "row 1", "separated by semicolons"],
                 id="cond-semicolons"),
    pytest.param(replace_bytes(COND, b"R_starved", b"R_starv\xe9d"), [COND, "row 8", "not UTF-8", "0xe9"],
                 id="cond-latin1-byte"),
    pytest.param(delete(COND), [COND, "not found"], id="cond-missing-file"),
    # measurements.csv: cells
    pytest.param(set_cell(MEAS, 1, "time_min", "abc"), [MEAS, "row 3", "'time_min'", "'abc'", "is not a number"],
                 id="meas-time-text"),
    pytest.param(set_cell(MEAS, 1, "time_min", "-15"), [MEAS, "row 3", "'time_min'", "'-15'", ">= 0"],
                 id="meas-time-negative"),
    pytest.param(set_cell(MEAS, 4, "target", "pERK1/2"),
                 [MEAS, "row 6", "'target'", "'pERK1/2'", "is not a known value"], id="meas-target-unknown"),
    pytest.param(set_cell(MEAS, 9, "condition_id", "P_IGF2"),
                 [MEAS, "row 11", "'condition_id'", "'P_IGF2'", "is not a condition_id of conditions.csv",
                  "did you mean 'P_IGF1'"], id="meas-condition-unknown"),
    pytest.param(set_cell(MEAS, 2, "signal", "0"), [MEAS, "row 4", "'signal'", "'0'", "must be > 0"],
                 id="meas-signal-zero"),
    pytest.param(set_cell(MEAS, 2, "signal", "NaN"), [MEAS, "row 4", "'signal'", "'NaN'", "not a finite number"],
                 id="meas-signal-nan"),
    pytest.param(set_cell(MEAS, 2, "signal", ""), [MEAS, "row 4", "'signal'", "is blank"], id="meas-signal-blank"),
    pytest.param(set_cell(MEAS, 7, "loading", "-3"), [MEAS, "row 9", "'loading'", "'-3'", "must be > 0"],
                 id="meas-loading-negative"),
    pytest.param(set_cell(MEAS, 7, "loading", ""),
                 [MEAS, "row 9", "'loading'", "other rows of blot 'B1' have one"], id="meas-loading-partly-blank"),
    pytest.param(set_cell(MEAS, 3, "replicate", "0"), [MEAS, "row 5", "'replicate'", "'0'", "1 or more"],
                 id="meas-replicate-zero"),
    pytest.param(set_cell(MEAS, 3, "replicate", "1.5"), [MEAS, "row 5", "'replicate'", "'1.5'", "not a whole number"],
                 id="meas-replicate-fraction"),
    pytest.param(add_row(MEAS, 0, signal="180.0"), [MEAS, "row 232", "same band as row 2"], id="meas-duplicate-band"),
    pytest.param(set_cells_where(MEAS, {"blot_id": "B3", "target": "pERK"}, "signal", "0"),
                 [MEAS, "'signal'", "blot 'B3' x target 'pERK' has no usable value"], id="meas-group-unusable"),
    # measurements.csv: columns and file
    pytest.param(drop_column(MEAS, "time_min"), [MEAS, "row 1", "'time_min'", "is missing"], id="meas-missing-column"),
    pytest.param(rename_column(MEAS, "signal", "Signal"),
                 [MEAS, "row 1", "'Signal'", "is not a known column", "did you mean 'signal'"],
                 id="meas-renamed-column"),
    pytest.param(rename_column(MEAS, "loading", "signal"), [MEAS, "row 1", "'signal'", "appears twice"],
                 id="meas-duplicate-header"),
    pytest.param(drop_last_cell(MEAS, 4), [MEAS, "row 6", "has 6 fields but the header has 7"], id="meas-ragged-row"),
    pytest.param(write_bytes(MEAS, b""), [MEAS, "is empty"], id="meas-empty-file"),
    pytest.param(keep_rows(MEAS, 0), [MEAS, "has a header but no data rows"], id="meas-header-only"),
    pytest.param(write_bytes(MEAS, b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00"), [MEAS, "NUL byte"],
                 id="meas-binary-xlsx"),
    pytest.param(delete(MEAS), [MEAS, "not found"], id="meas-missing-file"),
]


@pytest.mark.parametrize("mutate, fragments", MALFORMED)
def test_malformed_input_is_reported_without_traceback(dataset: Path, mutate, fragments: list[str]):
    mutate(dataset)
    before = files_under(dataset.parent)
    result = run_cli("validate", dataset.name, cwd=dataset.parent)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert TALLY.match(lines[-1]), lines[-1]
    assert all(line.startswith(("error: ", "warning: ")) for line in lines[:-1]), result.stderr
    assert any(all(f in line for f in fragments) for line in error_lines(result)), \
        f"no error line holds all of {fragments}:\n{result.stderr}"
    assert files_under(dataset.parent) == before, "validate wrote something"


def test_case_count():
    assert len(MALFORMED) >= 24
    assert len({p.id for p in MALFORMED}) == len(MALFORMED)


# ---------------------------------------------------------------- all problems at once


def test_every_problem_of_several_files_is_reported_at_once(dataset: Path):
    combine(
        edit_yaml(author="me"),
        set_cell(COND, 1, "stimulus", "IGF-1"),
        set_cell(COND, 4, "MK2206_uM", "ten"),
        set_cell(MEAS, 1, "time_min", "abc"),
        set_cell(MEAS, 20, "signal", "-5"),
        set_cell(MEAS, 40, "target", "pAKT"),
    )(dataset)
    result = run_cli("validate", dataset.name, cwd=dataset.parent)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    expected = [
        [YAML, "'author'", "is not a known key"],
        [COND, "row 3", "'stimulus'", "'IGF-1'"],
        [COND, "row 6", "'MK2206_uM'", "'ten'"],
        [MEAS, "row 3", "'time_min'", "'abc'"],
        [MEAS, "row 22", "'signal'", "'-5'"],
        [MEAS, "row 42", "'target'", "'pAKT'"],
    ]
    lines = error_lines(result)
    assert len(lines) == len(expected), result.stderr
    # reported in file order (dataset.yaml, conditions.csv, measurements.csv), then by row
    for line, fragments in zip(lines, expected):
        assert all(f in line for f in fragments), (fragments, line)
    assert result.stderr.splitlines()[-1] == f"{len(expected)} errors; validate: nothing written"


# ---------------------------------------------------------------- accepted variants


def _text_files(folder: Path):
    return [folder / name for name in (YAML, COND, MEAS)]


def with_bom(folder: Path) -> None:
    for path in _text_files(folder):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def line_endings(ending: bytes):
    def mutate(folder: Path) -> None:
        for path in _text_files(folder):
            lines = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
            path.write_bytes(ending.join(lines))
    return mutate


def shuffled_columns(folder: Path) -> None:
    rng = random.Random(1)
    for name in (COND, MEAS):
        rows = read_rows(folder, name)
        order = list(range(len(rows[0])))
        while order == sorted(order):
            rng.shuffle(order)
        write_rows(folder, name, [[r[j] for j in order] for r in rows])


def blank_trailing_lines(folder: Path) -> None:
    for path in _text_files(folder):
        path.write_bytes(path.read_bytes() + b"\r\n\n   \n" + (b",,,\n" if path.suffix == ".csv" else b""))


VARIANTS = [
    pytest.param(with_bom, id="utf8-bom"),
    pytest.param(line_endings(b"\r\n"), id="crlf"),
    pytest.param(line_endings(b"\n"), id="lf"),
    pytest.param(shuffled_columns, id="shuffled-columns"),
    pytest.param(blank_trailing_lines, id="blank-trailing-lines"),
]

COMPARED = ("signal", "y", "time_min", "loading", "replicate", "blot_id", "condition_id", "target")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[str, dict[str, np.ndarray]]:
    """Summary line of `validate` and the ingested arrays of the untouched example (folder also named ds)."""
    parent = tmp_path_factory.mktemp("pristine")
    shutil.copytree(EXAMPLE, parent / "ds")
    result = run_cli("validate", "ds", cwd=parent)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    ingested = run_cli("ingest", "ds", "--out", "data.nc", cwd=parent)
    assert ingested.returncode == 0, ingested.stderr
    with xr.open_dataset(parent / "data.nc", engine="h5netcdf") as ds:
        arrays = {name: ds[name].values.copy() for name in COMPARED}
    return result.stdout, arrays


@pytest.mark.parametrize("mutate", VARIANTS)
def test_accepted_variant_gives_same_summary_and_numbers(dataset: Path, pristine, mutate):
    summary, arrays = pristine
    mutate(dataset)
    result = run_cli("validate", dataset.name, cwd=dataset.parent)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == summary
    assert "valid. 12 conditions" in summary and "230 bands of 5 targets on 3 blots" in summary

    ingested = run_cli("ingest", dataset.name, "--out", "out/data.nc", cwd=dataset.parent)
    assert ingested.returncode == 0, ingested.stderr
    with xr.open_dataset(dataset.parent / "out" / "data.nc", engine="h5netcdf") as ds:
        for name in COMPARED:
            np.testing.assert_array_equal(ds[name].values, arrays[name], err_msg=name)


# ---------------------------------------------------------------- ingest writes nothing on bad input


@pytest.mark.parametrize("mutate", [
    pytest.param(set_cell(MEAS, 1, "time_min", "abc"), id="bad-cell"),
    pytest.param(delete(COND), id="missing-file"),
    pytest.param(edit_yaml(reference_line="MCF7"), id="reference-line-absent"),
])
def test_ingest_of_malformed_dataset_writes_no_file(dataset: Path, mutate):
    mutate(dataset)
    out_dir = dataset.parent / "out"
    out_dir.mkdir()
    result = run_cli("ingest", dataset.name, "--out", out_dir / "data.nc", cwd=dataset.parent)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out
    assert error_lines(result)
    assert result.stderr.splitlines()[-1].endswith("; ingest: nothing written")
    assert list(out_dir.iterdir()) == []


def test_ingest_of_malformed_dataset_keeps_existing_output(dataset: Path):
    out = dataset.parent / "out" / "data.nc"
    assert run_cli("ingest", dataset.name, "--out", out, cwd=dataset.parent).returncode == 0
    good = out.read_bytes()
    set_cell(MEAS, 0, "signal", "-1")(dataset)
    result = run_cli("ingest", dataset.name, "--out", out, cwd=dataset.parent)
    assert result.returncode == 2
    assert list(out.parent.iterdir()) == [out]
    assert out.read_bytes() == good


# ---------------------------------------------------------------- warnings


def test_implausible_dose_is_a_warning(dataset: Path):
    set_cell(COND, 3, "MK2206_uM", "500")(dataset)
    result = run_cli("validate", dataset.name, cwd=dataset.parent)
    assert result.returncode == 0, result.stderr
    assert error_lines(result) == []
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any(all(f in line for f in (COND, "row 5", "'MK2206_uM'", "500", "above 100 uM")) for line in warnings), \
        result.stderr
    assert "valid." in result.stdout


def test_condition_without_measurements_is_a_warning(dataset: Path):
    add_row(COND, 1, condition_id="P_IGF1_unmeasured")(dataset)
    result = run_cli("validate", dataset.name, cwd=dataset.parent)
    assert result.returncode == 0, result.stderr
    assert error_lines(result) == []
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any(all(f in line for f in (COND, "row 14", "'P_IGF1_unmeasured'", "has no measurement"))
               for line in warnings), result.stderr
    assert "13 conditions" in result.stdout


def test_dataset_that_validates_also_ingests(dataset: Path):
    text = (dataset / YAML).read_text(encoding="utf-8")
    text = text[: text.index("provenance:")] + "provenance:\n  lab: example lab\n  date: 2024-01-01\n"
    (dataset / YAML).write_text(text, encoding="utf-8")
    validated = run_cli("validate", dataset.name, cwd=dataset.parent)
    ingested = run_cli("ingest", dataset.name, "--out", "out/data.nc", cwd=dataset.parent)
    assert "Traceback" not in ingested.stderr
    assert ingested.returncode == validated.returncode
