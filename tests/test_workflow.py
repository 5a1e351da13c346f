"""The workflow (workflow/Snakefile): lint-clean, refuses a bad config before running anything, plans what each
kind of analysis needs, reruns a stage only when what it reads changes, runs as a module of another workflow,
and expands a sheet of analyses. It runs end to end in tests/test_fit.py (on a small dataset, with the fit
stages)."""

import os
import shutil
import subprocess

import yaml
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SNAKEMAKE = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or "snakemake"
ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def snakemake(*args, cwd):
    return subprocess.run([SNAKEMAKE, "-s", str(SNAKEFILE), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True)


def planned(run) -> set[str]:
    """The rules a dry run plans."""
    return {line.split()[1].rstrip(":") for line in run.stdout.splitlines() if line.startswith(("rule ", "localrule "))}


def jobs(run) -> dict[str, int]:
    """rule -> job count, from a dry run's job stats."""
    lines = run.stdout.split("Job stats:")[1].splitlines()[3:] if "Job stats:" in run.stdout else []
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        out[parts[0]] = int(parts[1])
    return out


def test_snakemake_lint_passes():
    run = snakemake("--lint", cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_workflow_rejects_a_bad_config(tmp_path):
    (tmp_path / "cfg.yaml").write_text("analysis: 'not ok'\ndataset: data/example\n")
    run = snakemake("--directory", str(tmp_path), "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "1",
                    "--dry-run", cwd=tmp_path)
    assert run.returncode != 0
    assert "not ok" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


def test_a_petab_config_plans_the_petab_stages(tmp_path):
    """`petab:` in a config: fit_map and fit on the PEtab problem, no blot ingest, and nothing of the
    default example config mixed in."""
    run = snakemake("--configfile", str(ROOT / "config" / "fujita2010.yaml"), "--dry-run", "--forceall",
                    "--directory", str(ROOT), "--nolock", cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert planned(run) == {"stage_config", "petab_fit_map", "petab_fit", "petab_report", "all"}


def test_misfit_csv_is_a_declared_output_of_the_report(tmp_path):
    """A blot analysis's misfit.csv is asked for by name: Snakemake plans the report rule for it, after predict and
    design."""
    run = snakemake("--configfile", str(ROOT / "config" / "config.yaml"), "--dry-run", "--forceall", "--nolock",
                    "--directory", str(ROOT), "results/example/misfit.csv", cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {"report", "predict", "design"} <= planned(run)  # the report waits for reversal.csv and design.csv


def test_model_variants_are_fitted_compared_and_reported(tmp_path):
    """`variants` in a config: each is fitted (fit_map, fit with --variant) into variants/<name>/, then
    `compare` ranks them with the base by PSIS-LOO, and the report waits for compare.csv."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"analysis": "v", "dataset": str(ROOT / "data" / "example"), "variants": [
        {"name": "pim_only", "model": {"shift_mechanisms": ["pim_parallel_kinase"]}},
        {"name": "no_foxo", "model": {"loops_off": ["foxo_rtk"]}}]}))
    run = snakemake("--configfile", str(cfg), "--dry-run", "--printshellcmds", "--directory", str(tmp_path),
                    "--cores", "2", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for name in ("pim_only", "no_foxo"):
        assert (f"fit-map results/v/variants/{name}/config/fit_map.yaml --variant {name} " in out
                and f"--out results/v/variants/{name}/map.json" in out)
        assert f"fit results/v/variants/{name}/config/fit.yaml --variant {name} " in out
    assert ("compare base=results/v/posterior.nc pim_only=results/v/variants/pim_only/posterior.nc "
            "no_foxo=results/v/variants/no_foxo/posterior.nc --out results/v/compare.csv") in out
    assert "report v --config results/v/config/report.yaml" in out


def test_fit_nuts_is_the_deprecated_name_of_fit(tmp_path, capsys):
    from pipeline import cli

    args = ["--map", "m.json", "--posterior", "p.nc", "--diagnostics", "d.json"]
    assert cli._parser().parse_args(["fit-nuts", "c.yaml", *args]).run is cli._parser().parse_args(["fit", "c.yaml", *args]).run
    missing = str(tmp_path / "missing.yaml")
    assert cli.main(["fit-nuts", missing, *args]) == cli.EXIT_BAD_INPUT  # it runs `fit`, which reads the config
    err = capsys.readouterr().err
    assert "fit-nuts is deprecated: the command is now `fit`" in err and "missing.yaml" in err


BLOT_OUTPUTS = ["data.nc", "simulation.nc", "simulation.png", "map.json", "posterior.nc", "diagnostics.json",
                "shifts.csv", "predictions.nc", "reversal.csv", "design.csv", "report.html", "misfit.csv"]


def test_a_stage_reruns_only_when_what_it_reads_changes(tmp_path):
    """The stages' config files are written by a local rule whose params are the sections each stage reads: a new
    summary.threshold_log2 reruns summarise, design and report, not the fits; a new sampler setting reruns the
    sampler and what follows, not the MAP fits or the simulation."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"analysis: a\ndataset: {ROOT / 'data' / 'example'}\nsummary: {{threshold_log2: 1.0}}\n")
    stages = ["simulate", "fit_map", "fit", "summarise", "predict", "design", "report"]
    common = ("--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "1")
    run = snakemake(*common, *[f"results/a/config/{s}.yaml" for s in stages], cwd=tmp_path)  # really written
    assert run.returncode == 0, run.stdout + run.stderr
    for name in BLOT_OUTPUTS:  # stand-ins for the stages' outputs, made up to date
        (tmp_path / "results" / "a" / name).touch()
    (tmp_path / "results" / "a" / "figures").mkdir()
    assert snakemake(*common, "--touch", cwd=tmp_path).returncode == 0
    assert jobs(snakemake(*common, "--dry-run", cwd=tmp_path)) == {}, "all up to date"

    cfg.write_text(cfg.read_text().replace("threshold_log2: 1.0", "threshold_log2: 0.5"))
    run = snakemake(*common, "--dry-run", cwd=tmp_path)
    assert jobs(run) == {"stage_config": 3, "summarise": 1, "design": 1, "report": 1, "all": 1}, run.stdout

    cfg.write_text(cfg.read_text().replace("threshold_log2: 0.5", "threshold_log2: 1.0") + "sampler: {chains: 3}\n")
    run = snakemake(*common, "--dry-run", cwd=tmp_path)
    assert jobs(run) == {"stage_config": 2, "fit": 1, "summarise": 1, "predict": 1, "design": 1, "report": 1,
                         "all": 1}, run.stdout


def test_the_fit_rules_state_what_they_need(tmp_path):
    """threads (one per chain, capped by the cores granted) reach the command as --workers; memory, runtime and
    GPUs are declared for profiles to set."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"analysis: a\ndataset: {ROOT / 'data' / 'example'}\nsampler: {{chains: 4}}\n")
    run = snakemake("--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "2", "--dry-run",
                    "--printshellcmds", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    fit = run.stdout.split("rule fit:")[1].split("\n\n")[0]
    assert "threads: 2" in fit and "--workers 2 " in fit
    assert "runtime=1440" in fit and "mem_mb=8000" in fit and "gpu=0" in fit


def test_the_workflow_runs_as_a_module_with_a_config_dict(tmp_path):
    """Another workflow, in another folder, uses this one as a Snakemake module given a config dict (no file)."""
    (tmp_path / "Snakefile").write_text(f"""
module blots:
    snakefile:
        "{SNAKEFILE}"
    config:
        {{"analysis": "via_module", "dataset": "{ROOT / 'data' / 'example'}", "sampler": {{"chains": 2}}}}


use rule * from blots as blots_*


rule all:
    input:
        rules.blots_all.input,
    default_target: True
""")
    run = subprocess.run([SNAKEMAKE, "--dry-run", "--cores", "2", "--printshellcmds"], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {"blots_fit_map", "blots_fit", "blots_report", "blots_stage_config"} <= set(jobs(run))
    assert "pipeline fit results/via_module/config/fit.yaml " in run.stdout


def test_a_sheet_expands_into_every_analysis(tmp_path):
    """`analyses: sheet.tsv`: one analysis per row (the base config with the row's dataset and overrides, a PEtab
    problem where the dataset is a YAML file), and the table across them."""
    sheet = tmp_path / "analyses.tsv"
    fujita = ROOT / "data" / "petab" / "Fujita_SciSignal2010" / "Fujita_SciSignal2010.yaml"
    sheet.write_text("# a comment\nanalysis\tdataset\toverrides\n"
                     f"one\t{ROOT / 'data' / 'example'}\t\n"
                     f"two\t{ROOT / 'data' / 'example'}\tsummary.threshold_log2=0.5; sampler.chains=3\n"
                     f"three\t{fujita}\t\n")
    run = snakemake("--configfile", str(ROOT / "config" / "config.yaml"), "--config", f"analyses={sheet}",
                    "--directory", str(tmp_path), "--cores", "2", "--dry-run", "--printshellcmds", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    counts = jobs(run)
    assert counts["fit"] == 2 and counts["petab_fit"] == 1 and counts["summarise_analyses"] == 1
    assert "summarise-analyses one=results/one/shifts.csv two=results/two/shifts.csv --out results/analyses.csv" \
        in run.stdout
    assert snakemake("--configfile", str(ROOT / "config" / "config.yaml"), "--config", f"analyses={sheet}",
                     "--directory", str(tmp_path), "--cores", "1", "results/two/config/fit.yaml",
                     cwd=tmp_path).returncode == 0
    two = yaml.safe_load((tmp_path / "results" / "two" / "config" / "fit.yaml").read_text())
    assert two["analysis"] == "two" and two["sampler"]["chains"] == 3 and two["summary"]["threshold_log2"] == 0.5
    assert two["predict"] == yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["predict"]


def test_a_bad_sheet_is_refused_with_every_problem(tmp_path):
    sheet = tmp_path / "analyses.tsv"
    sheet.write_text("analysis\tdataset\toverrides\n"
                     f"one\t{ROOT / 'data' / 'example'}\tsampler.chains\n"
                     f"one\t{ROOT / 'data' / 'example'}\t\n"
                     f"bad name\t{ROOT / 'data' / 'example'}\t\n")
    run = snakemake("--configfile", str(ROOT / "config" / "config.yaml"), "--config", f"analyses={sheet}",
                    "--directory", str(tmp_path), "--cores", "1", "--dry-run", cwd=tmp_path)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert f"{sheet}, row 2, column overrides: 'sampler.chains' is not key=value" in out
    assert f"{sheet}, row 3, column analysis: 'one' appears twice" in out
    assert "analysis 'bad name'" in out  # (the schema's pattern)
    assert not (tmp_path / "results").exists()


def test_top_mechanisms_across_analyses():
    import pandas as pd

    from pipeline.outputs import analyses

    table = pd.DataFrame({"cell_line": ["R", "R", "R", "S"], "mechanism": ["m1", "m2", "m3", "m1"],
                          "parameter": ["p1", "p2", "p3", "p1"], "median_log2_fc": [0.1, -3.0, 2.0, 0.0],
                          "ci90_low": 0.0, "ci90_high": 0.0, "prob_shift": [0.2, 0.9, 0.9, 0.1]})
    out = analyses.top_mechanisms({"a": table, "b": table.iloc[:1]}, top=2)
    assert list(out.columns) == analyses.COLUMNS
    got = [(r.analysis, r.cell_line, r.rank, r.mechanism) for r in out.itertuples()]
    assert got == [("a", "R", 1, "m2"), ("a", "R", 2, "m3"), ("a", "S", 1, "m1"), ("b", "R", 1, "m1")]
