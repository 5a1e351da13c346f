"""The Snakefile: lint-clean, and refuses a bad config before running anything. It runs end to end in
tests/test_fit.py (on a small dataset, with the fit stages)."""

import os
import shutil
import subprocess

import yaml
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SNAKEMAKE = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or "snakemake"
ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def snakemake(*args, cwd):
    return subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True)


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
    run = snakemake("--configfile", str(ROOT / "configs" / "fujita2010.yaml"), "--dry-run", "--forceall",
                    "--directory", str(ROOT), "--nolock", cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    planned = {line.split()[1].rstrip(":") for line in run.stdout.splitlines() if line.startswith(("rule ", "localrule "))}
    assert planned == {"fit_map", "fit", "report", "all"}


def test_misfit_csv_is_a_declared_output_of_the_report(tmp_path):
    """A blot analysis's misfit.csv is asked for by name: Snakemake plans the report rule for it, after predict and
    design."""
    run = snakemake("--configfile", str(ROOT / "configs" / "example.yaml"), "--dry-run", "--forceall", "--nolock",
                    "--directory", str(ROOT), "results/example/misfit.csv", cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    planned = {line.split()[1].rstrip(":") for line in run.stdout.splitlines() if line.startswith(("rule ", "localrule "))}
    assert {"report", "predict", "design"} <= planned  # the report waits for reversal.csv and design.csv


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
        assert f"fit-map {cfg} --variant {name} " in out and f"--out results/v/variants/{name}/map.json" in out
        assert f"fit {cfg} --variant {name} " in out
    assert ("compare base=results/v/posterior.nc pim_only=results/v/variants/pim_only/posterior.nc "
            "no_foxo=results/v/variants/no_foxo/posterior.nc --out results/v/compare.csv") in out
    assert f"report v --config {cfg} --results results/v" in out


def test_fit_nuts_is_the_deprecated_name_of_fit(tmp_path, capsys):
    from pipeline import cli

    args = ["--map", "m.json", "--posterior", "p.nc", "--diagnostics", "d.json"]
    assert cli._parser().parse_args(["fit-nuts", "c.yaml", *args]).run is cli._parser().parse_args(["fit", "c.yaml", *args]).run
    missing = str(tmp_path / "missing.yaml")
    assert cli.main(["fit-nuts", missing, *args]) == cli.EXIT_BAD_INPUT  # it runs `fit`, which reads the config
    err = capsys.readouterr().err
    assert "fit-nuts is deprecated: the command is now `fit`" in err and "missing.yaml" in err
