"""The candidate treatments of `predict` and `design`, from the drug table (`pipeline/data/drugs.csv`).

A treatment is a `{drug: dose_uM}` mapping (`{}`: vehicle). The candidates of a config's `predict:` section are,
in this order: vehicle; each candidate drug alone at every dose of its grid (`predict.doses_uM`, else the
drug's `doses_uM` in drugs.csv); every pair of candidate drugs, each at the middle dose of its grid
(`pairs: middle`) or at every pair of their doses (`pairs: grid`); then the config's own `treatments`. A
drug added to drugs.csv is a candidate with no change here.
"""

from __future__ import annotations

import itertools

import numpy as np

from pipeline.model import drugs as drug_table
from pipeline.vocabulary import DRUGS

Treatment = dict  # {drug: dose_uM}; {} is vehicle


def name(treatment: Treatment) -> str:
    """Readable, e.g. 'ipatasertib 1 uM + AZD1208 1 uM' (drugs in drug-table order); 'vehicle' for none."""
    parts = [f"{d} {treatment[d]:g} uM" for d in DRUGS if treatment.get(d, 0.0) > 0]
    return " + ".join(parts) or "vehicle"


def grid(drug: str, cfg: dict) -> tuple[float, ...]:
    """The drug's single-agent dose grid: the config's `predict.doses_uM`, else the drug table's."""
    return tuple(sorted(cfg["doses_uM"].get(drug, drug_table.doses(drug))))


def middle(drug: str, cfg: dict) -> float:
    """The middle dose of the drug's grid (the upper one of two middles)."""
    g = grid(drug, cfg)
    return g[len(g) // 2]


def candidates(cfg: dict) -> list[Treatment]:
    """Every candidate treatment of a `predict:` section, without repeats, in the order of the module docstring."""
    chosen = [d for d in DRUGS if cfg["drugs"] is None or d in cfg["drugs"]]
    out = [{}]
    out += [{d: x} for d in chosen for x in grid(d, cfg)]
    for a, b in itertools.combinations(chosen, 2):
        if cfg["pairs"] == "middle":
            out.append({a: middle(a, cfg), b: middle(b, cfg)})
        elif cfg["pairs"] == "grid":
            out += [{a: x, b: y} for x in grid(a, cfg) for y in grid(b, cfg)]
    out += [dict(t) for t in cfg["treatments"]]
    unique = {name(t): t for t in out}
    return list(unique.values())


def doses_matrix(treatments: list[Treatment]) -> np.ndarray:
    """[treatments, vocabulary.DRUGS] doses in uM."""
    out = np.zeros((len(treatments), len(DRUGS)))
    for i, t in enumerate(treatments):
        for d, x in t.items():
            out[i, DRUGS.index(d)] = x
    return out
