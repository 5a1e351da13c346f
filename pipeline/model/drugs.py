"""The drugs the model knows: ONE table, `pipeline/data/drugs.csv`.

One row per drug x binding site, with the columns

- `drug`: its name in a dataset's dose column `<drug>_uM` (letters, digits and _);
- `site`: the network occupancy it binds, one of `network.OCCUPANCIES` (alp, MK, ipa, rap, TK1, TK2, RL1, RL2,
  tram, PIMi). What a site does is the rate equations' own (code); this table maps drugs onto sites;
- `target`, `mode`: the protein it binds and how (e.g. "ATP-competitive", "allosteric (PH-in lock)");
- `ic50`, `hill`: the names of its IC50 and Hill-slope parameters in `pipeline/data/parameters.csv`;
- `doses_uM`: the default dose series of a design, `;`-separated (model-spec section 6);
- `description`.

A drug on two sites (AZD8055 on mTORC1 and mTORC2) has two rows, with one Hill parameter and one dose
series. Drugs on one site compete (`network.occupancies`). A new drug that acts like an existing one is one
row here per site it binds, plus its IC50 and Hill rows in parameters.csv.
"""

from __future__ import annotations

import csv
import io
import math
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from pipeline.model import parameters
from pipeline.problems import InputError, Problem, display_path, one_of

TABLE_PATH = resources.files("pipeline") / "data" / "drugs.csv"
COLUMNS = ("drug", "site", "target", "mode", "ic50", "hill", "doses_uM", "description")
REQUIRED = ("drug", "site", "ic50", "hill", "doses_uM")
HOW_TO_ADD = ("to add a drug, write a row per site it binds in pipeline/data/drugs.csv and its IC50 and Hill "
              "parameters in pipeline/data/parameters.csv (data/README.md)")
DRUG_NAME = re.compile(r"[A-Za-z0-9_]+")  # a column name `<drug>_uM` and, as `dose_<drug>`, an SBML id


class Binding(NamedTuple):
    """One row of the table: a drug on one site."""

    drug: str
    site: str
    target: str
    mode: str
    ic50: str  # parameter name
    hill: str  # parameter name
    doses_uM: tuple[float, ...]
    description: str
    row: int  # spreadsheet row number in drugs.csv (the header is row 1)


@cache
def bindings() -> tuple[Binding, ...]:
    """Every row of the table in the file's order; `InputError` naming every problem of a malformed file."""
    shown = _shown()
    reader = csv.reader(io.StringIO(TABLE_PATH.read_text(encoding="utf-8-sig")))
    header = [c.strip() for c in next(reader, [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError([Problem(shown, f"lacks the column(s) {', '.join(missing)}", row=1,
                                  fix=f"the header is {','.join(COLUMNS)}")])
    out, problems, end = [], [], reader.line_num
    for record in reader:
        row, end = end + 1, reader.line_num  # the spreadsheet row: where the record starts
        cells = {c: (record[header.index(c)] if header.index(c) < len(record) else "").strip() for c in COLUMNS}
        if not any(cells.values()):
            continue
        found = _row_problems(cells, row, shown)
        problems += found
        if not found:
            doses = tuple(float(x) for x in cells["doses_uM"].split(";"))
            out.append(Binding(**{**cells, "doses_uM": doses}, row=row))
    problems += _consistency_problems(out, shown)
    if problems:
        raise InputError(problems)
    if not out:
        raise InputError([Problem(shown, "has no drugs", fix="write one row per drug x binding site")])
    return tuple(out)


def names() -> tuple[str, ...]:
    """The drugs, in the order of their first row (the order of dose axes and `vocabulary.DRUGS`)."""
    return tuple(dict.fromkeys(b.drug for b in bindings()))


def rows(drug: str) -> tuple[Binding, ...]:
    """The drug's rows (one per site it binds)."""
    out = tuple(b for b in bindings() if b.drug == drug)
    if not out:
        raise KeyError(f"unknown drug {drug!r}: {one_of(names(), drug)}; {HOW_TO_ADD}")
    return out


def hill(drug: str) -> str:
    """The name of the drug's Hill-slope parameter."""
    return rows(drug)[0].hill


def ic50s(drug: str) -> tuple[str, ...]:
    """The names of the drug's IC50 parameters, one per site, in table order."""
    return tuple(b.ic50 for b in rows(drug))


def doses(drug: str) -> tuple[float, ...]:
    """The drug's default dose series of a design, uM."""
    return rows(drug)[0].doses_uM


def check_sites(sites) -> None:
    """`InputError` if a row binds a site that is not in `sites` (the network's occupancies)."""
    problems = [Problem(_shown(), "is not a binding site of the network", row=b.row, column="site", value=b.site,
                        fix=one_of(sites, b.site) + " (a new site is new rate equations: pipeline/model/network.py)")
                for b in bindings() if b.site not in sites]
    if problems:
        raise InputError(problems)


def _shown() -> str:
    return display_path(Path(str(TABLE_PATH)))


def _row_problems(cells: dict, row: int, shown: str) -> list[Problem]:
    problems = []

    def problem(column, message, fix):
        problems.append(Problem(shown, message, fix=fix, row=row, column=column, value=cells[column] or None))

    for column in REQUIRED:
        if not cells[column]:
            problem(column, "is blank", "fill it in")
    if cells["drug"] and not DRUG_NAME.fullmatch(cells["drug"]):
        problem("drug", "is not a valid drug name",
                "use letters, digits and _ only (it names the dose column <drug>_uM), e.g. RapaLink1 for RapaLink-1")
    groups = parameters.table()["group"]
    for column in ("ic50", "hill"):
        name = cells[column]
        if name and name not in groups.index:
            same_kind = [n for n, g in groups.items() if g == column]
            problem(column, f"is not a parameter of {display_path(Path(str(parameters.TABLE_PATH)))}",
                    f"add a row {name} there (group {column}), or {one_of(same_kind, name)}")
    if cells["doses_uM"] and not _valid_doses(cells["doses_uM"]):
        problem("doses_uM", "is not a list of doses", "write doses > 0 in uM separated by ';', e.g. 0.1;0.3;1;3")
    return problems


def _text(value) -> str:
    return ";".join(f"{x:g}" for x in value) if isinstance(value, tuple) else value


def _valid_doses(text: str) -> bool:
    try:
        values = [float(x) for x in text.split(";")]
    except ValueError:
        return False
    return all(math.isfinite(x) and x > 0 for x in values)


def _consistency_problems(table: list[Binding], shown: str) -> list[Problem]:
    """One row per drug x site; one Hill parameter and one dose series per drug."""
    problems, first = [], {}
    for b in table:
        if (b.drug, b.site) in first:
            problems.append(Problem(shown, f"repeats the drug and site of row {first[b.drug, b.site]}", row=b.row,
                                    column="site", value=b.site, fix="write one row per drug x binding site"))
            continue
        first[b.drug, b.site] = b.row
        head = next(a for a in table if a.drug == b.drug)
        for column, fix in (("hill", "a drug has one Hill slope: write the same parameter on each of its rows"),
                            ("doses_uM", "a drug has one dose series: write the same doses on each of its rows")):
            if getattr(b, column) != getattr(head, column):
                problems.append(Problem(shown, f"differs from row {head.row} of the same drug", row=b.row,
                                        column=column, value=_text(getattr(b, column)), fix=fix))
    return problems
