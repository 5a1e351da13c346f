"""Ingest: the NetCDF holds exactly the input numbers, labelled, with the loading normalisation applied."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline.blots import dataset, ingest
from pipeline import vocabulary as v

EXAMPLE = Path(__file__).parent / "data" / "handmade"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> xr.Dataset:
    out = tmp_path_factory.mktemp("ingest") / "data.nc"
    run = subprocess.run([sys.executable, "-m", "pipeline", "ingest", str(EXAMPLE), "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout
    return ingest.read(out)


def test_measurements_round_trip_exactly(ingested):
    rows = read_csv(EXAMPLE / v.MEASUREMENTS_CSV)
    assert ingested.sizes[v.DIM_MEASUREMENT] == len(rows)
    for name in (v.BLOT_ID, v.CONDITION_ID, v.TARGET):
        assert list(ingested[name].values) == [r[name] for r in rows]
    for name in (v.TIME_MIN, v.SIGNAL, v.LOADING):
        np.testing.assert_array_equal(ingested[name].values, [float(r[name]) for r in rows])
    np.testing.assert_array_equal(ingested[v.REPLICATE].values, [int(r[v.REPLICATE]) for r in rows])


def test_conditions_round_trip_exactly(ingested):
    rows = read_csv(EXAMPLE / v.CONDITIONS_CSV)
    assert list(ingested[v.DIM_CONDITION].values) == [r[v.CONDITION_ID] for r in rows]
    for name in (v.CELL_LINE, v.STIMULUS):
        assert list(ingested[name].values) == [r[name] for r in rows]
    for name in (v.STIMULUS_CONC, v.PRETREATMENT_MIN):
        np.testing.assert_array_equal(ingested[name].values, [float(r[name]) for r in rows])
    assert list(ingested[v.DIM_DRUG].values) == ["MK2206", "ipatasertib"]
    for drug in ingested[v.DIM_DRUG].values:
        np.testing.assert_array_equal(ingested[v.DOSE_UM].sel(drug=drug).values,
                                      [float(r[v.dose_column(drug)]) for r in rows])


def test_tables_from_netcdf_equal_validated_tables(ingested):
    data = dataset.load(EXAMPLE)
    conditions, measurements = ingest.tables(ingested)
    expected_c = data.conditions.drop(columns="row")
    expected_m = data.measurements.drop(columns="row")
    assert conditions.astype(object).equals(expected_c.astype(object))
    assert measurements.astype(object).equals(expected_m.astype(object))


def test_dimensions_coordinates_and_metadata_are_labelled(ingested):
    assert set(ingested.dims) == {v.DIM_MEASUREMENT, v.DIM_CONDITION, v.DIM_DRUG}
    assert ingested[v.DOSE_UM].dims == (v.DIM_CONDITION, v.DIM_DRUG)
    assert ingested.attrs["reference_line"] == "T47D"
    assert ingested.attrs["format_version"] == 1
    # condition properties reach each band through the condition_id coordinate
    lines = ingested[v.CELL_LINE].sel(condition=ingested[v.CONDITION_ID]).values
    rows = read_csv(EXAMPLE / v.MEASUREMENTS_CSV)
    line_of = {r[v.CONDITION_ID]: r[v.CELL_LINE] for r in read_csv(EXAMPLE / v.CONDITIONS_CSV)}
    assert list(lines) == [line_of[r[v.CONDITION_ID]] for r in rows]


def test_y_is_signal_over_loading_relative_to_blot_median(ingested):
    rows = read_csv(EXAMPLE / v.MEASUREMENTS_CSV)
    for blot in {r[v.BLOT_ID] for r in rows}:
        mine = [r for r in rows if r[v.BLOT_ID] == blot]
        median = float(np.median([float(r[v.LOADING]) for r in mine]))
        expected = [float(r[v.SIGNAL]) * median / float(r[v.LOADING]) for r in mine]
        np.testing.assert_allclose(ingested[v.Y].values[ingested[v.BLOT_ID].values == blot], expected, rtol=1e-14)


def test_blot_without_loading_keeps_raw_signal(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    for name in (v.DATASET_YAML, v.CONDITIONS_CSV):
        (folder / name).write_bytes((EXAMPLE / name).read_bytes())
    rows = read_csv(EXAMPLE / v.MEASUREMENTS_CSV)
    for r in rows:
        if r[v.BLOT_ID] == "B3":
            r[v.LOADING] = ""
    with open(folder / v.MEASUREMENTS_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ds = ingest.to_xarray(dataset.load(folder))
    on_b3 = ds[v.BLOT_ID].values == "B3"
    assert np.isnan(ds[v.LOADING].values[on_b3]).all()
    np.testing.assert_array_equal(ds[v.Y].values[on_b3], ds[v.SIGNAL].values[on_b3])
    assert not np.isnan(ds[v.Y].values).any()


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    out = tmp_path / "data.nc"
    out.write_text("old")

    class Boom(Exception):
        pass

    class Broken(xr.Dataset):
        __slots__ = ()

        def to_netcdf(self, path, **kwargs):
            Path(path).write_text("half")
            raise Boom

    with pytest.raises(Boom):
        ingest.write(Broken(), out)
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.nc"]


def test_out_pointing_at_a_folder_is_a_clear_error(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pipeline", "ingest", str(EXAMPLE), "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"{tmp_path}: is a folder" in run.stderr and "--out" in run.stderr
    assert list(tmp_path.iterdir()) == []
