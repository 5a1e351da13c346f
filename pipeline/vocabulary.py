"""The names of the blot dataset format v1, defined once.

Every module, the NetCDF files, the configs and the reports use these names.
Units are part of a column's name (`time_min`, `<drug>_uM`).
"""

from pipeline.model import drugs

FORMAT_VERSION = 1

DATASET_YAML = "dataset.yaml"
CONDITIONS_CSV = "conditions.csv"
MEASUREMENTS_CSV = "measurements.csv"

STIMULI = ("IGF1", "EGF", "insulin", "FBS", "none")
"""Stimuli; `stimulus_conc` is in nM, except FBS in % (v/v)."""

DRUGS = drugs.names()
"""The drugs, in the order of `pipeline/data/drugs.csv` (their one table: site, target, parameters, doses)."""
DOSE_SUFFIX = "_uM"

TARGETS = (
    "pAKT_S473",
    "pAKT_T308",
    "pS6_S240",
    "pS6_S235",
    "pERK",
    "pPRAS40_T246",
    "p4EBP1_T37",
    "IRS1",
)

# conditions.csv
CONDITION_ID = "condition_id"
CELL_LINE = "cell_line"
STIMULUS = "stimulus"
STIMULUS_CONC = "stimulus_conc"
PRETREATMENT_MIN = "pretreatment_min"
CONDITION_COLUMNS = (CONDITION_ID, CELL_LINE, STIMULUS, STIMULUS_CONC, PRETREATMENT_MIN)

# measurements.csv
BLOT_ID = "blot_id"
TIME_MIN = "time_min"
TARGET = "target"
SIGNAL = "signal"
LOADING = "loading"
REPLICATE = "replicate"
MEASUREMENT_REQUIRED = (BLOT_ID, CONDITION_ID, TIME_MIN, TARGET, SIGNAL)
MEASUREMENT_OPTIONAL = (LOADING, REPLICATE)

# dimensions and variables of the ingested NetCDF (see data/README.md)
DIM_MEASUREMENT = "measurement"
DIM_CONDITION = "condition"
DIM_DRUG = "drug"
DOSE_UM = "dose_uM"
Y = "y"

# a dose above this (uM) is almost always a unit mistake (nM entered as uM)
MAX_PLAUSIBLE_DOSE_UM = 100.0


def dose_column(drug: str) -> str:
    return f"{drug}{DOSE_SUFFIX}"
