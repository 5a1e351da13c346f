"""A dataset's experiment as arrays for `simulate` and the observation model.

`from_dataset(ds)` turns an ingested blot dataset (pipeline.blots.ingest) into the conditions
(one per condition_id, each pointing at its cell line's parameter row), the times to
simulate per condition, and for every band the (condition, time, target) it observes and
its blot x target scale group.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr

from pipeline.model import simulate
from pipeline import vocabulary as v


class Design(NamedTuple):
    lines: tuple[str, ...]  # cell lines; the reference line first
    condition_ids: tuple[str, ...]
    conditions: simulate.Conditions
    times: np.ndarray  # [C, T] sorted measurement times of each condition, padded by repeating the last
    cond_index: np.ndarray  # [N] per band
    time_index: np.ndarray  # [N]
    target_index: np.ndarray  # [N] into vocabulary.TARGETS
    group: np.ndarray  # [N] blot x target scale group
    groups: tuple[tuple[str, str], ...]  # (blot_id, target) of each group
    y: np.ndarray  # [N] loading-normalised signal


def from_dataset(ds: xr.Dataset) -> Design:
    cids = [str(c) for c in ds[v.DIM_CONDITION].values]
    reference = ds.attrs["reference_line"]
    line_names = [str(x) for x in ds[v.CELL_LINE].values]
    lines = (reference,) + tuple(sorted(set(line_names) - {reference}))
    drugs = [str(d) for d in ds[v.DIM_DRUG].values]
    doses = [{d: float(ds[v.DOSE_UM].values[i, j]) for j, d in enumerate(drugs)} for i in range(len(cids))]
    conds = simulate.conditions(
        line=np.array([lines.index(x) for x in line_names]),
        stimulus=[str(s) for s in ds[v.STIMULUS].values],
        doses_uM=doses,
        pretreatment_min=ds[v.PRETREATMENT_MIN].values.astype(float),
    )
    band_cond = np.array([cids.index(str(c)) for c in ds[v.CONDITION_ID].values])
    band_time = ds[v.TIME_MIN].values.astype(float)
    per_cond = [np.unique(band_time[band_cond == i]) for i in range(len(cids))]
    width = max(1, max(len(t) for t in per_cond))
    times = np.array([np.pad(t if len(t) else np.zeros(1), (0, width - max(len(t), 1)), mode="edge")
                      for t in per_cond])
    time_index = np.array([np.searchsorted(per_cond[c], t) for c, t in zip(band_cond, band_time)], dtype=int)
    keys = list(zip((str(b) for b in ds[v.BLOT_ID].values), (str(t) for t in ds[v.TARGET].values)))
    groups = tuple(dict.fromkeys(keys))
    return Design(
        lines=lines,
        condition_ids=tuple(cids),
        conditions=conds,
        times=times,
        cond_index=band_cond,
        time_index=time_index,
        target_index=np.array([v.TARGETS.index(t) for _, t in keys]),
        group=np.array([groups.index(k) for k in keys]),
        groups=groups,
        y=ds[v.Y].values.astype(float),
    )


def predictions(sim: simulate.Simulation, design: Design):
    """The model value h of every band, [N]."""
    return sim.observables[design.cond_index, design.time_index, design.target_index]
