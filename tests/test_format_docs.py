"""data/README.md documents the format: its worked example is a valid dataset, and its lists are the code's."""

import re
from pathlib import Path

from pipeline.blots import dataset, ingest
from pipeline.model import drugs
from pipeline import vocabulary as v

DOC = (Path(__file__).parents[1] / "data" / "README.md").read_text()


def block_after(label: str) -> str:
    match = re.search(re.escape(label) + r"[^\n]*\n```\n(.*?)```", DOC, re.S)
    assert match, label
    return match.group(1)


def test_worked_example_is_valid_and_ingests(tmp_path):
    (tmp_path / v.CONDITIONS_CSV).write_text(block_after("`conditions.csv`:"))
    (tmp_path / v.MEASUREMENTS_CSV).write_text(block_after("`measurements.csv` (one blot"))
    (tmp_path / v.DATASET_YAML).write_text("name: doc\ndescription: ''\nreference_line: T47D\nprovenance: docs\n")
    data = dataset.load(tmp_path)
    assert data.warnings == ()
    ds = ingest.to_xarray(data)
    assert list(ds[v.SIGNAL].values) == [5210, 610, 6020, 4480]
    assert ds[v.DOSE_UM].sel(condition="R_MK1", drug="MK2206").item() == 1.0


def test_documented_names_are_the_vocabulary():
    for name in v.STIMULI + v.DRUGS + v.TARGETS + v.CONDITION_COLUMNS + v.MEASUREMENT_REQUIRED \
            + v.MEASUREMENT_OPTIONAL:
        assert f"`{name}`" in DOC, name


def drug_list() -> str:
    """The list of drugs data/README.md shows, from `pipeline/data/drugs.csv`."""
    lines = ["| drug | site | target | mode | IC50 | Hill | default doses (uM) |", "|---|---|---|---|---|---|---|"]
    for b in drugs.bindings():
        d = b.doses_uM
        lines.append(f"| `{b.drug}` | `{b.site}` | {b.target} | {b.mode} | `{b.ic50}` | `{b.hill}` | "
                     f"{min(d):g}–{max(d):g} ({len(d)}) |")
    return "\n".join(lines)


def test_documented_drugs_are_the_drug_table():
    match = re.search(r"<!-- drugs.csv: begin -->\n(.*?)\n<!-- drugs.csv: end -->", DOC, re.S)
    assert match, "data/README.md lacks the drug list between <!-- drugs.csv: begin/end --> markers"
    assert match.group(1) == drug_list(), "data/README.md's drug list differs from pipeline/data/drugs.csv; " \
        "paste this between its markers:\n" + drug_list()
