"""The `simulate` stage: its NetCDF holds the model's numbers, and its figure plots those numbers."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import config
from pipeline.blots import dataset, ingest
from pipeline.model import parameters, simulate, trajectories
from pipeline import vocabulary as v

ROOT = Path(__file__).parents[1]
HANDMADE = ROOT / "tests" / "data" / "handmade"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"analysis: t\ndataset: {HANDMADE}\nsimulate: {{n_times: 20, shifts: {{T47D_MK2206R: "
                   "{IC50_MK2206: 30}}}\nmodel: {loops_off: [foxo_rtk]}\n")
    out = subprocess.run([sys.executable, "-m", "pipeline", "simulate", str(cfg), "--out", str(tmp / "sim.nc"),
                          "--plot", str(tmp / "sim.png")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return config.load(cfg), ingest.read(tmp / "sim.nc"), tmp


def test_netcdf_holds_the_simulation_of_each_condition(run):
    cfg, traj, _ = run
    assert bool(traj["ok"].all())
    data = ingest.to_xarray(dataset.load(HANDMADE))
    assert list(traj[v.DIM_CONDITION].values) == list(data[v.DIM_CONDITION].values)
    assert set(data[v.TIME_MIN].values) <= set(traj[v.TIME_MIN].values)
    # one condition of the shifted line recomputed directly with the variant's values
    values = {**parameters.nominal(), "g_F": 0.0}
    shifted = {**values, "IC50_MK2206": 30 * values["IC50_MK2206"]}
    cid = "R_IGF1_MK1"
    row = list(data[v.DIM_CONDITION].values).index(cid)
    sim = simulate.simulate(np.stack([parameters.as_array(values), parameters.as_array(shifted)]),
                            simulate.conditions(line=[1], stimulus=["IGF1"], doses_uM=[{"MK2206": 1.0}],
                                                pretreatment_min=[60.0]), traj[v.TIME_MIN].values[None, :])
    np.testing.assert_allclose(traj["observable"].values[row], np.asarray(sim.observables[0]), rtol=1e-9)
    assert traj[v.CELL_LINE].values[row] == "T47D_MK2206R"


def test_figure_draws_the_netcdf_numbers(run):
    _, traj, tmp = run
    data = ingest.to_xarray(dataset.load(HANDMADE))
    assert (tmp / "sim.png").stat().st_size > 10_000
    fig = trajectories.plot(traj, data)
    ax = fig.axes[0]  # reference line x first measured target
    assert ax.get_title() == "T47D: pAKT_S473"
    first = ax.lines[0]
    np.testing.assert_array_equal(first.get_ydata(), traj["observable"].sel(condition="P_starved",
                                                                             target="pAKT_S473").values)
    # the band points are the bands divided by their blot x target's best scale
    bands = trajectories.scaled_bands(traj, data)
    mine = (data[v.CONDITION_ID].values == "P_starved") & (data[v.TARGET].values == "pAKT_S473")
    np.testing.assert_allclose(ax.lines[1].get_ydata(), bands[mine])
    log_ratio = np.log(bands) - np.log(traj["observable"].sel(condition=data[v.CONDITION_ID], time_min=data[v.TIME_MIN],
                                                               target=data[v.TARGET]).values)
    group_of = list(zip(data[v.BLOT_ID].values, data[v.TARGET].values))
    for key in set(group_of):  # best scale: mean log ratio zero in every group
        assert abs(np.mean(log_ratio[[g == key for g in group_of]])) < 1e-9
