"""The cross-analysis table (`results/analyses.csv`): the top mechanisms of every resistant line of every
analysis of one run (the sheet `analyses:`), from each analysis's shifts.csv."""

from __future__ import annotations

import pandas as pd

COLUMNS = ["analysis", "cell_line", "rank", "mechanism", "parameter", "median_log2_fc", "ci90_low", "ci90_high",
           "prob_shift"]


def top_mechanisms(tables: dict[str, pd.DataFrame], top: int = 3) -> pd.DataFrame:
    """tables: analysis -> its shifts table. Per analysis x cell line, the `top` rows most probably shifted
    (ties: the larger median |log2 FC| first), ranked from 1."""
    rows = []
    for name, table in tables.items():
        t = table.assign(_size=table["median_log2_fc"].abs())
        for line, part in t.groupby("cell_line", sort=True):
            best = part.sort_values(["prob_shift", "_size"], ascending=False, kind="stable").head(top)
            rows += [{"analysis": name, "rank": i + 1, **r} for i, (_, r) in enumerate(best.iterrows())]
    return pd.DataFrame(rows, columns=COLUMNS + ["_size"]).drop(columns="_size")
