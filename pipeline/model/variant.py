"""The model variant of an analysis config: parameter values and the estimated set.

Values: nominal (pipeline/data/parameters.csv), then `model.fixed`, then the values that
switch off `model.loops_off`.

Estimated: `model.estimate` (or the table's default set), plus

- every parameter that a mechanism of `model.shift_mechanisms` may shift ("symmetric lines"):
  the reference line's value is estimated and each other line's is it times exp(delta), so what the
  lines share is fitted once and a shift measures only their difference. Held in the reference line
  alone, such a parameter would leave the table's misfit to the other lines, which then report it as
  a resistance mechanism (a false call on identical lines). `model.asymmetric_shifts: true` opts out;
- the Hill slope of every drug given at two or more doses in the dataset (`doses_uM`), shared by the
  lines (with one dose, slope and IC50 cannot be told apart: the slope stays at its table value);

less anything fixed or switched off.
"""

from __future__ import annotations

import numpy as np

from pipeline.model import drugs, network, parameters
from pipeline.vocabulary import DRUGS


def values(config: dict) -> dict[str, float]:
    model = config["model"]
    return {**parameters.nominal(), **model["fixed"], **network.loop_overrides(model["loops_off"])}


def shiftable(config: dict) -> tuple[tuple[str, str], ...]:
    """(mechanism, parameter) of every parameter that may shift in the non-reference lines."""
    model = config["model"]
    held = set(network.loop_overrides(model["loops_off"]))
    return tuple((m, p) for m in model["shift_mechanisms"] for p in parameters.mechanism_parameters(m)
                 if p not in held)


def dosed_drugs(doses_uM) -> tuple[str, ...]:
    """The drugs given at two or more distinct non-zero doses; doses_uM: [conditions, vocabulary.DRUGS]."""
    doses = np.asarray(doses_uM, dtype=float).reshape(-1, len(DRUGS))
    return tuple(d for j, d in enumerate(DRUGS) if len(np.unique(doses[doses[:, j] > 0, j])) >= 2)


def estimated(config: dict, doses_uM=None) -> tuple[str, ...]:
    """The estimated parameters, in the order: chosen set, then shiftable ones, then Hill slopes."""
    model = config["model"]
    held = set(model["fixed"]) | set(network.loop_overrides(model["loops_off"]))
    chosen = model["estimate"]
    if chosen is None:
        table = parameters.table()
        chosen = [n for n in table.index if table.loc[n, "estimate"]]
    chosen = list(chosen)
    if not model["asymmetric_shifts"]:
        chosen += [p for _, p in shiftable(config)]
    if doses_uM is not None:
        chosen += [drugs.hill(d) for d in dosed_drugs(doses_uM)]
    return tuple(n for n in dict.fromkeys(chosen) if n not in held)


def line_values(config: dict, lines) -> dict[str, dict[str, float]]:
    """Values per cell line for the `simulate` stage: the variant's, times `simulate.shifts` of that line."""
    base = values(config)
    shifts = config["simulate"]["shifts"]
    return {line: {n: x * shifts.get(line, {}).get(n, 1.0) for n, x in base.items()} for line in lines}
