"""The one parameter table of the network (`pipeline/data/parameters.csv`).

Each kinetic parameter has its spec name (model-spec.md sections 7 and 9), unit,
nominal value (= prior median), prior (log-normal with sigma in log10 units, or
Beta for fractions, or none for structural constants), whether it is estimated by
default, its class, and the resistance mechanism it belongs to (spec section 4).
The network, the priors, the dataset simulator and the reports all read it here.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

TABLE_PATH = resources.files("pipeline") / "data" / "parameters.csv"

MECHANISMS = (
    "akt_allosteric_binding",
    "pim_parallel_kinase",
    "pten_loss",
    "mtorc1_hyperactivation",
    "mtor_activating_mutation",
    "rapalog_binding_loss",
    "foxo_rtk_feedback",
    "mapk_compensation",
)


@cache
def table() -> pd.DataFrame:
    """The parameter table, indexed by parameter name, in the file's order."""
    with TABLE_PATH.open(encoding="utf-8") as f:
        df = pd.read_csv(f, keep_default_na=False, na_values={"sigma_log10": [""], "beta_a": [""], "beta_b": [""]})
    df["estimate"] = df["estimate"].map({"yes": True, "no": False})
    return df.set_index("name")


def names() -> tuple[str, ...]:
    return tuple(table().index)


def nominal() -> dict[str, float]:
    """Name -> nominal value (the spec's section 9, = prior median)."""
    return {k: float(x) for k, x in table()["value"].items()}


def as_array(values: dict[str, float]) -> np.ndarray:
    """A full parameter vector in table order from a name -> value mapping (all names required)."""
    missing = set(names()) - set(values)
    if missing:
        raise KeyError(f"parameter values missing for {sorted(missing)}")
    return np.array([values[n] for n in names()], dtype=float)


def mechanism_parameters(mechanism: str) -> tuple[str, ...]:
    """The parameters a resistance mechanism shifts (spec section 4)."""
    if mechanism not in MECHANISMS:
        raise KeyError(f"unknown mechanism {mechanism!r}; known: {', '.join(MECHANISMS)}")
    t = table()
    return tuple(t.index[t["mechanism"] == mechanism])


def is_fraction(name: str) -> bool:
    """Parameters confined to [0, 1] (Beta priors)."""
    return table().loc[name, "prior"] == "beta"
