"""A validated blot dataset as a labelled xarray Dataset (NetCDF), and back.

Layout (see data/README.md):
- dimension `measurement`, one entry per quantified band, with coordinates
  `blot_id`, `condition_id`, `time_min`, `target`, `replicate` and variables
  `signal` (as read), `loading` (NaN where not given) and `y`, the loading-normalised
  signal: `y = signal / (loading / median loading of the blot)`, or `signal` where the
  blot has no loading control. Dividing by the blot's median keeps `y` in the signal's
  units; the blot x target scale of the observation model absorbs any constant.
- dimension `condition`, indexed by the condition ids, with the condition table as
  coordinates (`cell_line`, `stimulus`, `stimulus_conc`, `pretreatment_min`) and
  `dose_uM(condition, drug)` for the drugs of the dataset.
- attributes: the dataset.yaml fields (provenance as JSON) and the format version.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import vocabulary as v
from pipeline.blots.dataset import BlotDataset
from pipeline.outputs.files import NETCDF_ENGINE, atomic_path


def normalised_signal(measurements: pd.DataFrame) -> np.ndarray:
    """Signal divided by the lane's loading relative to the blot's median loading (signal where no loading)."""
    loading = measurements[v.LOADING]
    relative = loading / loading.groupby(measurements[v.BLOT_ID]).transform("median")
    return np.where(loading.notna(), measurements[v.SIGNAL] / relative, measurements[v.SIGNAL])


def to_xarray(dataset: BlotDataset) -> xr.Dataset:
    m, c = dataset.measurements, dataset.conditions
    text = lambda s: np.asarray(s, dtype=object)  # noqa: E731  (variable-length strings in NetCDF)
    doses = c[[v.dose_column(d) for d in dataset.drugs]].to_numpy(float).reshape(len(c), len(dataset.drugs))
    meas = v.DIM_MEASUREMENT
    return xr.Dataset(
        data_vars={
            v.SIGNAL: ((meas,), m[v.SIGNAL].to_numpy(float), {"long_name": "background-subtracted band intensity",
                                                               "units": "arbitrary"}),
            v.LOADING: ((meas,), m[v.LOADING].to_numpy(float), {"long_name": "lane loading control (NaN: none)",
                                                                 "units": "arbitrary"}),
            v.Y: ((meas,), normalised_signal(m), {"long_name": "signal / (loading / median loading of the blot)",
                                                 "units": "arbitrary"}),
        },
        coords={
            meas: np.arange(len(m)),
            v.BLOT_ID: ((meas,), text(m[v.BLOT_ID])),
            v.CONDITION_ID: ((meas,), text(m[v.CONDITION_ID])),
            v.TIME_MIN: ((meas,), m[v.TIME_MIN].to_numpy(float), {"units": "min", "long_name": "time since the stimulus"}),
            v.TARGET: ((meas,), text(m[v.TARGET])),
            v.REPLICATE: ((meas,), m[v.REPLICATE].to_numpy(np.int64)),
            v.DIM_CONDITION: text(c[v.CONDITION_ID]),
            v.CELL_LINE: ((v.DIM_CONDITION,), text(c[v.CELL_LINE])),
            v.STIMULUS: ((v.DIM_CONDITION,), text(c[v.STIMULUS])),
            v.STIMULUS_CONC: ((v.DIM_CONDITION,), c[v.STIMULUS_CONC].to_numpy(float), {"units": "nM (FBS: %)"}),
            v.PRETREATMENT_MIN: ((v.DIM_CONDITION,), c[v.PRETREATMENT_MIN].to_numpy(float),
                                 {"units": "min of drug before the stimulus"}),
            v.DIM_DRUG: text(dataset.drugs),
            v.DOSE_UM: ((v.DIM_CONDITION, v.DIM_DRUG), doses, {"units": "uM"}),
        },
        attrs={
            "name": dataset.meta["name"],
            "description": dataset.meta["description"],
            "reference_line": dataset.meta["reference_line"],
            "provenance": json.dumps(dataset.meta["provenance"], default=str),  # YAML dates -> ISO text
            "format_version": v.FORMAT_VERSION,
            "source": str(dataset.folder),
        },
    )


def write(ds: xr.Dataset, out: str | Path) -> None:
    """Write atomically as NetCDF4."""
    with atomic_path(out) as tmp:
        ds.to_netcdf(tmp, engine=NETCDF_ENGINE)


def read(path: str | Path) -> xr.Dataset:
    with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
        return ds.load()


def tables(ds: xr.Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (conditions, measurements) tables in the CSV column names, from an ingested Dataset."""
    conditions = pd.DataFrame({
        v.CONDITION_ID: ds[v.DIM_CONDITION].values.astype(str),
        v.CELL_LINE: ds[v.CELL_LINE].values.astype(str),
        v.STIMULUS: ds[v.STIMULUS].values.astype(str),
        v.STIMULUS_CONC: ds[v.STIMULUS_CONC].values,
        v.PRETREATMENT_MIN: ds[v.PRETREATMENT_MIN].values,
        **{v.dose_column(str(d)): ds[v.DOSE_UM].sel({v.DIM_DRUG: d}).values for d in ds[v.DIM_DRUG].values},
    })
    measurements = pd.DataFrame({
        v.BLOT_ID: ds[v.BLOT_ID].values.astype(str),
        v.CONDITION_ID: ds[v.CONDITION_ID].values.astype(str),
        v.TIME_MIN: ds[v.TIME_MIN].values,
        v.TARGET: ds[v.TARGET].values.astype(str),
        v.SIGNAL: ds[v.SIGNAL].values,
        v.LOADING: ds[v.LOADING].values,
        v.REPLICATE: ds[v.REPLICATE].values,
    })
    return conditions, measurements
