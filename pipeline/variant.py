"""The model variant of an analysis config: parameter values and the estimated set.

Values: nominal (pipeline/data/parameters.csv), then `model.fixed`, then the values that
switch off `model.loops_off`. Estimated: `model.estimate`, or the table's default set,
less anything fixed or switched off.
"""

from __future__ import annotations

from pipeline import network, parameters


def values(config: dict) -> dict[str, float]:
    model = config["model"]
    return {**parameters.nominal(), **model["fixed"], **network.loop_overrides(model["loops_off"])}


def estimated(config: dict) -> tuple[str, ...]:
    model = config["model"]
    held = set(model["fixed"]) | set(network.loop_overrides(model["loops_off"]))
    chosen = model["estimate"]
    if chosen is None:
        table = parameters.table()
        chosen = [n for n in table.index if table.loc[n, "estimate"]]
    return tuple(n for n in chosen if n not in held)


def line_values(config: dict, lines) -> dict[str, dict[str, float]]:
    """Values per cell line for the `simulate` stage: the variant's, times `simulate.shifts` of that line."""
    base = values(config)
    shifts = config["simulate"]["shifts"]
    return {line: {n: x * shifts.get(line, {}).get(n, 1.0) for n, x in base.items()} for line in lines}
