"""The fit on the real network: a small synthetic experiment with one planted shift (tests/data/one_shift,
made by `python -m pipeline simulate-dataset tests/data/specs/one_shift.yaml --out tests/data/one_shift`:
IC50_MK2206 x 30 in the resistant line, X unshifted) and a null (a line identical to the parental one),
with kinetic values off the parameter table's in every line alike; MAP then NUTS as the stages run them,
sized for CI (kd_T, IC50_MK2206 and, by symmetric lines, X estimated; 2 shiftable mechanisms, 2 chains).
The long calibration over many datasets is benchmarks/sbc.py."""

import json
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from test_workflow import snakemake

from pipeline import cli, config, fit
from pipeline.blots import dataset, ingest
from pipeline.outputs import misfit

ONE_SHIFT = Path(__file__).parent / "data" / "one_shift"
PLANTED_LOG2 = np.log2(30.0)
NULL = "identical"  # the line identical to the reference: nothing may shift there
# warmup == samples: one compile of the NUTS kernel. 100 + 100 (not 150 + 150: a third of the CI suite's longest
# fixture); measured 2026-12-06: max R-hat 1.028, min bulk ESS 79, min tail ESS 35, the same attribution
CHAINS, WARMUP, SAMPLES = 2, 100, 100

CONFIG = {
    "analysis": "one_shift",
    "dataset": str(ONE_SHIFT),
    "seed": 3,
    "model": {"estimate": ["kd_T", "IC50_MK2206"],
              "shift_mechanisms": ["akt_allosteric_binding", "pim_parallel_kinase"]},
    "map": {"starts": 4, "steps": 40},
    # sequential: one compile of the kernel (pytest's other worker keeps the second core busy)
    "sampler": {"chains": CHAINS, "warmup": WARMUP, "samples": SAMPLES, "chain_method": "sequential"},
    # what to do next, sized for CI: 16 draws (two batches), two drugs, one time; a 40-point simulation grid
    "predict": {"resists": {"resistant": "MK2206"}, "draws": 16, "drugs": ["MK2206", "ipatasertib"], "times_min": [60]},
    "design": {"draws": 16, "top": 5},
    "simulate": {"n_times": 40},
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The whole workflow (ingest, simulate, fit_map, fit) through Snakemake, as a lab runs it."""
    out = tmp_path_factory.mktemp("fit")
    (out / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    run = snakemake("--directory", str(out), "--configfile", str(out / "cfg.yaml"), "--cores", "2", cwd=out)
    assert run.returncode == 0, run.stdout + run.stderr
    return out / "results" / "one_shift"


def test_workflow_writes_every_output(fitted):
    for name in ("data.nc", "simulation.nc", "simulation.png", "map.json", "posterior.nc", "shifts.csv",
                 "diagnostics.json", "report.html", "figures/shifts.png", "figures/predictive_resistant.png",
                "predictions.nc", "reversal.csv", "design.csv", "figures/reversal.png", "figures/design.png"):
        assert (fitted / name).is_file(), name
    with xr.open_dataset(fitted / "data.nc", engine="h5netcdf") as got:
        want = ingest.to_xarray(dataset.load(ONE_SHIFT))
        np.testing.assert_array_equal(got["y"].values, want["y"].values)
    log = (fitted.parents[1] / "logs" / "one_shift" / "fit_map.log").read_text()
    assert "MAP iteration 1/" in log and "MAP done" in log  # progress is shown
    assert not list(fitted.glob(".*.part"))  # nothing half-written


def test_predict_and_design_on_the_fit(fitted):
    """The predict and design stages on the fitted posterior: the planted resistance shows (the resistant line
    under MK-2206 3 uM stays above the parental line under it), vehicle is predicted alike in both lines, and
    every expected information lies between 0 and the entropy of the question it answers."""
    with xr.open_dataset(fitted / "predictions.nc", engine="h5netcdf") as pred:
        assert dict(pred["prediction"].sizes) == {"draw": 16, "cell_line": 3, "treatment": 14, "time_min": 1,
                                                  "readout": 2}
        assert pred.attrs["solver_failures"] == 0 and bool(pred["ok"].all())
    rev = pd.read_csv(fitted / "reversal.csv")
    assert set(rev["cell_line"]) == {"resistant"} and len(rev) == 14 * 2
    at = lambda t, r="pPRAS40_T246": rev[(rev.treatment == t) & (rev.readout == r)].iloc[0]  # noqa: E731
    assert at("MK2206 3 uM")["prob_reversal"] < 0.05 and at("MK2206 3 uM")["reference"] == "parental + MK2206 3 uM"
    assert at("vehicle")["prob_reversal"] == 0.0
    design = pd.read_csv(fitted / "design.csv")
    assert set(design["cell_line"]) == {"identical", "resistant"} and (design.groupby("cell_line").size() == 5).all()
    assert (design["expected_info_bits"] >= -1e-9).all() and (design["p_true_after"] <= 1 + 1e-9).all()
    assert (design["p_true_after"] >= design["p_true_now"] - 0.05).all()  # an experiment does not hurt, on average
    assert design["times_min"].iloc[0] == "0;10;30;60"
    page = (fitted / "report.html").read_text()
    assert "Which treatment reverses resistance?" in page and "Which blot to run next?" in page
    assert "resistant: next blot" in page


def test_map_finds_the_planted_shift(fitted):
    result = json.loads((fitted / "map.json").read_text())
    stats = result["start_statistics"]
    assert stats["starts"] == 4 and stats["failed_start"] == 0
    best = result["fits"][0]
    assert best["rank"] == 1 and best["log_posterior"] == max(f["log_posterior"] for f in result["fits"])
    # the shared kinetic values off the table's pull the magnitude (measured: 4.28 for the planted 4.91)
    assert abs(best["log2_fc"]["resistant"]["IC50_MK2206"] - PLANTED_LOG2) < 1.0
    assert abs(best["log2_fc"]["resistant"]["X"]) < 0.5
    # symmetric lines: the table's misfit (shared by all lines) is fitted once, not taken for a shift
    assert list(best["parameters"]) == ["kd_T", "IC50_MK2206", "X"]
    assert max(abs(x) for x in best["log2_fc"][NULL].values()) < 0.3
    assert np.array(result["hessian_at_best"]).shape == (len(result["coords"]),) * 2
    # what the MAP's curvature says the data inform: every coordinate's Laplace contraction in [0, 1], the
    # planted shift among the informed ones, the sloppiest directions in the diagnostics and the report
    laplace = result["laplace"]
    assert set(laplace["contraction"]) == set(result["coords"])
    assert all(0.0 <= c <= 1.0 for c in laplace["contraction"].values())
    assert laplace["contraction"]["shift:resistant:IC50_MK2206"] > 0.5
    diag = json.loads((fitted / "diagnostics.json").read_text())
    assert diag["sloppy_directions"] == laplace["sloppy_directions"]
    eigen = [d["eigenvalue"] for d in laplace["sloppy_directions"]]
    assert eigen == sorted(eigen) and len(eigen) == min(5, len(result["coords"]))
    assert "Sloppy directions at the MAP" in (fitted / "report.html").read_text()


def test_planted_mechanism_is_attributed_and_the_unplanted_one_is_not(fitted):
    import pandas as pd

    table = pd.read_csv(fitted / "shifts.csv")
    assert list(table.columns) == fit.SHIFT_COLUMNS
    assert list(table["prob_shift"]) == sorted(table["prob_shift"], reverse=True)
    assert table.loc[table["cell_line"] == NULL, "prob_shift"].max() < 0.5  # no call on identical lines
    rows = table[table["cell_line"] == "resistant"].set_index("parameter")
    assert rows.loc["IC50_MK2206", "mechanism"] == "akt_allosteric_binding"
    assert rows.loc["IC50_MK2206", "prob_shift"] > 0.9
    assert rows.loc["X", "prob_shift"] < 0.5
    # the kinetic values off the table's, shared by all lines, pull the magnitude down a little (measured:
    # median 4.30, 90 % 4.01 to 4.84, for the planted 4.91): the model is misspecified, as for real cells
    assert rows.loc["IC50_MK2206", "ci90_low"] > 2.0
    assert abs(rows.loc["IC50_MK2206", "median_log2_fc"] - PLANTED_LOG2) < 1.0


def test_chains_converged(fitted):
    diag = json.loads((fitted / "diagnostics.json").read_text())
    assert diag["max_rhat"] < 1.05
    # 200 draws: a stuck or drifting chain gives ESS below 10; the measured run 79 bulk, 35 tail
    assert diag["min_ess_bulk"] > 50 and diag["min_ess_tail"] > 20
    for key in ("divergences", "solver_failures", "gradient_evaluations", "wall_s", "ess_bulk_per_s"):
        assert key in diag
    assert diag["gradient_evaluations"] > CHAINS * (WARMUP + SAMPLES)


def test_posterior_file_has_every_group_labelled(fitted):
    idata = az.from_netcdf(fitted / "posterior.nc")
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data",
                  "constant_data"):
        assert group in idata.groups(), group
    ds = ingest.to_xarray(dataset.load(ONE_SHIFT))
    n = ds.sizes["measurement"]
    assert idata.log_likelihood["y"].shape == (CHAINS, SAMPLES, n)
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "measurement")
    assert list(idata.observed_data["target"].values) == list(ds["target"].values)
    np.testing.assert_array_equal(idata.observed_data["y"].values, ds["y"].values)
    assert set(idata.posterior["log2_fc"]["shift_parameter"].values) == {"IC50_MK2206", "X"}
    assert list(idata.posterior["cell_line"].values) == [NULL, "resistant"]
    assert idata.sample_stats["solver_failures"].dims == ("chain",)
    assert bool(idata.sample_stats["solver_ok"].all())
    # the per-band log-likelihood is a real density: it sums to the joint one with the drawn scales and
    # PSIS-LOO runs on it
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    # the posterior-predictive median sits near the data on the log scale (noise sigma = 0.1)
    pred = np.log(idata.posterior_predictive["y"]).median(("chain", "draw")).values
    assert np.median(np.abs(pred - np.log(ds["y"].values))) < 0.15


def test_shifts_command_prints_the_top_mechanism(fitted, capsys):
    assert cli.main(["shifts", str(fitted / "shifts.csv"), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "resistant:" in out and "akt_allosteric_binding (IC50_MK2206)" in out


def test_config_defaults_for_the_fit(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"analysis": "x", "dataset": str(ONE_SHIFT)}))
    cfg = config.load(path)
    assert cfg["map"]["starts"] >= 16 and cfg["sampler"]["target_accept"] == 0.9
    assert cfg["prior"]["shift"] == "laplace" and len(cfg["model"]["shift_mechanisms"]) == 8


# ---- the report (last stage), its figures from the numbers, and the notebook ----------------------------
def _draws(da):
    return da.stack(sample=("chain", "draw")).transpose("sample", ...).values


def test_report_is_one_self_contained_page_with_every_figure(fitted):
    import base64
    import re

    page = (fitted / "report.html").read_text()
    for heading in ("Dataset", "Can the fit be trusted?", "Mechanism shifts per resistant line",
                    "Posterior predictive against the blots", "Sampler", "What the data inform"):
        assert f"<h2>{heading}</h2>" in page, heading
    for check in ("R-hat (max)", "ESS bulk (min)", "ESS tail (min)", "Divergences", "Solver failures (sampling)",
                  "E-BFMI (min over chains)", "Chains in separate modes"):
        assert check in page, check
    assert not re.search(r"(src|href)=[\"'](?!data:)", page)  # nothing loaded from elsewhere
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    files = sorted((fitted / "figures").glob("*.png"))
    assert {"shifts", "predictive_parental", f"predictive_{NULL}", "predictive_resistant", "rank", "pairs",
            "contraction", "misfit", "reversal", "design"} == \
        {f.stem for f in files}
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(f.read_bytes() for f in files)
    assert list(pd.read_csv(fitted / "misfit.csv").columns) == misfit.COLUMNS  # a declared output of the report
    diag = json.loads((fitted / "diagnostics.json").read_text())
    assert f"{diag['min_ess_bulk']:.0f}" in page and f"{diag['divergences']} of {CHAINS * SAMPLES}" in page


def test_predictive_figure_plots_the_posterior_predictive_of_posterior_nc(fitted):
    from pipeline.outputs import figures

    idata = az.from_netcdf(fitted / "posterior.nc")
    obs = idata.observed_data
    labels = list(idata.posterior["scale"].values)
    group = np.array([labels.index(f"{b}|{t}") for b, t in zip(obs["blot_id"].values, obs["target"].values)])
    rep = _draws(idata.posterior_predictive["y"]) / np.exp(_draws(idata.posterior["log_scale"]))[:, group]
    scale_median = np.exp(np.median(_draws(idata.posterior["log_scale"]), axis=0))[group]
    fig = figures.plot_predictive(idata, "resistant")
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}
    cond_line = dict(zip(idata.constant_data["condition"].values, idata.constant_data["cell_line"].values))
    checked = 0
    for cid in dict.fromkeys(obs["condition_id"].values):
        if cond_line[cid] != "resistant":
            continue
        for target in dict.fromkeys(obs["target"].values):
            rows = (obs["condition_id"].values == cid) & (obs["target"].values == target)
            times = np.unique(obs["time_min"].values[rows])
            want = [np.median(rep[:, rows & (obs["time_min"].values == t)]) for t in times]
            line = lines[f"median|{cid}|{target}"]
            np.testing.assert_allclose(line.get_xdata(), times / 60.0)
            np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
            checked += 1
    n_conditions = sum(line == "resistant" for line in cond_line.values())
    assert checked == n_conditions * len(set(obs["target"].values)) >= 4  # every panel of the line
    # the bands: signal / their blot's scale (posterior median), every band of the line drawn once
    points = np.concatenate([ln.get_ydata() for ax in fig.axes for ln in ax.get_lines() if ln.get_marker() == "o"])
    in_line = np.array([cond_line[c] == "resistant" for c in obs["condition_id"].values])
    np.testing.assert_allclose(np.sort(points), np.sort((obs["y"].values / scale_median)[in_line]), rtol=1e-12)


def test_shift_contraction_and_pair_figures_plot_the_posterior_numbers(fitted):
    import pandas as pd

    from pipeline.outputs import figures

    idata = az.from_netcdf(fitted / "posterior.nc")
    fc = idata.posterior["log2_fc"].sel(cell_line="resistant")
    table = pd.read_csv(fitted / "shifts.csv")
    fig = figures.plot_shifts(table, 1.0)
    (points,) = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "median|resistant"]
    rows = table[table["cell_line"] == "resistant"]
    want = [float(fc.sel(shift_parameter=p).median()) for p in rows["parameter"].iloc[::-1]]
    np.testing.assert_allclose(points.get_xdata(), want, rtol=1e-5)  # shifts.csv keeps 6 digits

    # contraction: 1 - posterior variance / prior variance, here of log kd_T and of the planted log2 FC
    contraction = figures.contraction_table(idata.posterior, idata.prior).set_index("parameter")
    for name, post, prior in (
            ("log kd_T", np.log(_draws(idata.posterior["kd_T"])), np.log(_draws(idata.prior["kd_T"]))),
            ("log2_fc resistant:IC50_MK2206", _draws(fc.sel(shift_parameter="IC50_MK2206")),
             _draws(idata.prior["log2_fc"].sel(cell_line="resistant", shift_parameter="IC50_MK2206")))):
        assert contraction.loc[name, "contraction"] == pytest.approx(1 - np.var(post, ddof=1) / np.var(prior, ddof=1))
    # the prior group is the prior: Laplace(0, 0.5) shifts, so var(log2 FC) = 2 (0.5 / ln 2)^2
    assert contraction.loc["log2_fc resistant:X", "prior_sd"] ** 2 == pytest.approx(2 * (0.5 / np.log(2)) ** 2, rel=0.2)
    assert contraction.loc["log kd_T", "contraction"] > 0.5  # the blots inform the binding constant
    bars = figures.plot_contraction(contraction.reset_index()).axes[0].patches
    np.testing.assert_allclose([b.get_width() for b in bars], contraction["contraction"].values)

    draws = figures.parameter_draws(idata.posterior)
    names, corr = figures.most_correlated(draws)
    r = np.corrcoef(draws.to_numpy().T)
    np.fill_diagonal(r, 0)
    i, j = np.unravel_index(np.argmax(np.abs(r)), r.shape)
    assert set(names[:2]) == {draws.columns[i], draws.columns[j]}
    assert len(names) == 4


def test_notebook_runs_on_the_fit(fitted):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(Path(__file__).parents[1] / "notebooks" / "diagnostics.ipynb", as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = f'ANALYSIS = "one_shift"\nRESULTS = "{fitted}"\nCONFIG = "{fitted.parents[1] / "cfg.yaml"}"'
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(fitted.parents[1])}}
                   ).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "most correlated:" in text and f"Computed from {CHAINS * SAMPLES} posterior samples" in text
    assert "resistant: next blot" in text and "the level of parental + MK2206 3 uM" in text
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def test_every_output_records_its_provenance(fitted):
    """data.nc, simulation.nc, every group of posterior.nc, predictions.nc, map.json, diagnostics.json and the
    report, read back from the files: the package version, the git commit, the command, and (but data.nc) the
    stage's config with its seed."""
    import pipeline
    from pipeline.outputs import provenance

    records = {}
    for name in ("data.nc", "simulation.nc", "predictions.nc"):
        with xr.open_dataset(fitted / name, engine="h5netcdf") as ds:
            records[name] = provenance.of(ds.attrs)
    idata = az.from_netcdf(fitted / "posterior.nc")
    records.update({f"posterior.nc/{g}": provenance.of(getattr(idata, g).attrs) for g in idata.groups()})
    for name in ("map.json", "diagnostics.json"):
        records[name] = json.loads((fitted / name).read_text())["provenance"]
    for name, record in records.items():
        assert record["pipeline_version"] == pipeline.__version__, name
        assert record["git_commit"] == provenance.git_commit() and record["command"].startswith("python -m pipeline ")
        if name != "data.nc":
            assert int(record["seed"]) == CONFIG["seed"] and yaml.safe_load(record["config"])["analysis"] == "one_shift"
    assert records["posterior.nc/posterior"]["command"].startswith("python -m pipeline fit ")
    page = (fitted / "report.html").read_text()
    assert "<h2>Provenance</h2>" in page and records["posterior.nc/posterior"]["command"] in page


@pytest.mark.slow
def test_compare_stage_prefers_the_model_with_the_planted_mechanism(tmp_path):
    """The compare stage end to end (slow: three fits): the base model can shift the planted mechanism
    (akt_allosteric_binding: IC50_MK2206 x 30); `pim_only` cannot, so it must rank last by PSIS-LOO, by far
    more than its standard error, and the report must show the table."""
    import pandas as pd

    cfg = CONFIG | {"variants": [{"name": "pim_only", "model": {"shift_mechanisms": ["pim_parallel_kinase"]}},
                                 {"name": "akt_only", "model": {"shift_mechanisms": ["akt_allosteric_binding"]}}]}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = snakemake("--directory", str(tmp_path), "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "2",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    results = tmp_path / "results" / "one_shift"
    table = pd.read_csv(results / "compare.csv").set_index("variant")
    assert table["rank"].idxmax() == "pim_only"
    assert table.loc["pim_only", "elpd_diff"] > 4 * table.loc["pim_only", "dse"]
    assert "Model comparison (PSIS-LOO)" in (results / "report.html").read_text()
