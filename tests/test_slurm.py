"""profiles/slurm: what it asks of SLURM (quick: read and dry-run), and the small test fit through a real SLURM
(slow): a single-node slurmctld + slurmd + munged on this machine (tests/slurm/cluster.sh, Debian's slurm-wlm,
installed with apt-get if missing, so it needs root), the workflow run with `--profile profiles/slurm` and
command-line overrides where this machine differs from a cluster (partition `debug`, no GPU, small memory).

The SLURM run takes 6 to 10 minutes on 2 cores (6 when they are otherwise idle; the fit stages' JIT compiles
dominate; `cluster.sh start` takes about 10 s, the apt install included), hence `slow`:
    .venv/bin/python -m pytest tests/test_slurm.py -m slow -p no:xdist -o addopts=''"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
PROFILE = ROOT / "profiles" / "slurm"
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
SLURM_DIR = Path(os.environ.get("PIPELINE_SLURM_DIR", "/tmp/pipeline-slurm"))
SNAKEMAKE = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or "snakemake"
ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
       "SLURM_CONF": str(SLURM_DIR / "etc" / "slurm.conf"), "PIPELINE_SLURM_DIR": str(SLURM_DIR)}

FIT_RULES = ["fit_map", "fit", "fit_map_variant", "fit_variant", "petab_fit_map", "petab_fit"]
GPU_RULES = ["fit", "fit_variant", "petab_fit"]
OTHER_RULES = ["ingest", "simulate", "predict", "design", "compare", "report", "petab_report"]  # with a mem_mb

# tests/test_fit.py's experiment (tests/data/one_shift), sized down: one estimated parameter, one mechanism,
# a few MAP steps and NUTS draws
CONFIG = {
    "analysis": "one_shift",
    "dataset": str(ROOT / "tests" / "data" / "one_shift"),
    "seed": 3,
    "model": {"estimate": ["kd_T"], "shift_mechanisms": ["akt_allosteric_binding"]},
    "map": {"starts": 2, "steps": 10},
    "sampler": {"chains": 2, "warmup": 30, "samples": 30, "chain_method": "sequential"},
    "predict": {"resists": {"resistant": "MK2206"}, "draws": 8, "drugs": ["MK2206"], "times_min": [60]},
    "design": {"draws": 8, "top": 2},
    "simulate": {"n_times": 20},
}


def test_profile_asks_for_a_gpu_per_fit_and_sets_every_fit_rule():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["jobs"] >= 1
    assert {"slurm_partition", "runtime", "mem_mb"} <= set(profile["default-resources"])
    assert "slurm_account" in (PROFILE / "config.yaml").read_text(), "the account line a lab uncomments"
    fits = profile["set-resources"]
    assert set(FIT_RULES) <= set(fits)
    for rule in FIT_RULES:
        assert {"slurm_partition", "runtime", "mem_mb", "cpus_per_task"} <= set(fits[rule]), rule
        assert isinstance(fits[rule]["runtime"], int) and fits[rule]["runtime"] > 0  # minutes
        assert fits[rule].get("gpu", 0) == (1 if rule in GPU_RULES else 0), rule
        assert "gres" not in fits[rule]  # the plugin refuses gpu and gres together


def test_profile_resolves_on_the_workflow(tmp_path):
    """A dry run through the profile (no cluster needed): the NUTS fit gets its GPU and partition."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    run = subprocess.run([SNAKEMAKE, "-s", str(SNAKEFILE), "--profile", str(PROFILE), "--directory", str(tmp_path),
                          "--configfile", str(tmp_path / "cfg.yaml"), "--dry-run"],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    resources = dict(re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", run.stdout, re.M))
    assert "gpu=1" in resources["fit"] and "slurm_partition=gpu" in resources["fit"]
    assert "gpu=0" in resources["fit_map"] and "slurm_partition=cpu" in resources["fit_map"]
    assert "slurm_partition=cpu" in resources["ingest"]


def _etc_conf_is_another_clusters() -> bool:
    etc = Path("/etc/slurm/slurm.conf")
    return (etc.exists() or etc.is_symlink()) and os.path.realpath(etc) != str(SLURM_DIR / "etc" / "slurm.conf")


@pytest.fixture(scope="module")
def cluster():
    """A single-node SLURM cluster for this module; stopped afterwards unless it was running before."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the test cluster runs on Linux")
    if os.geteuid() != 0:
        pytest.skip("the test cluster needs root (apt-get, daemons as SlurmUser=root, /etc/slurm/slurm.conf)")
    if _etc_conf_is_another_clusters():
        pytest.skip("/etc/slurm/slurm.conf belongs to a real cluster here")
    was_up = subprocess.run([str(CLUSTER), "status"], env=ENV, capture_output=True, text=True).returncode == 0
    start = subprocess.run([str(CLUSTER), "start"], env=ENV, capture_output=True, text=True, timeout=600)
    assert start.returncode == 0, start.stdout + start.stderr
    yield SLURM_DIR
    if not was_up:
        subprocess.run([str(CLUSTER), "stop"], env=ENV, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_small_fit_runs_through_slurm(cluster, tmp_path):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    # where the test machine differs from a cluster: its one partition, no GPU, a node of a few GB and cores
    overrides = [f"{rule}:{key}={value}" for rule in FIT_RULES
                 for key, value in (("slurm_partition", "debug"), ("gpu", 0), ("mem_mb", 1000), ("cpus_per_task", 1))]
    overrides += [f"{rule}:mem_mb=1000" for rule in OTHER_RULES]
    run = subprocess.run(
        [SNAKEMAKE, "-s", str(SNAKEFILE), "--profile", str(PROFILE), "--directory", str(tmp_path),
         "--configfile", str(tmp_path / "cfg.yaml"),
         "--default-resources", "slurm_partition=debug", "mem_mb=1000", "runtime=30",
         "--set-resources", *overrides,
         "--slurm-no-account",  # no accounting database: nothing to guess an account from
         "--slurm-status-command", "squeue",  # no sacct without slurmdbd (MinJobAge keeps ended jobs in squeue)
         "--slurm-init-seconds-before-status-checks", "1",
         "--slurm-keep-successful-logs",  # the evidence below
         "--retries", "0"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]

    results = tmp_path / "results" / "one_shift"
    for name in ("posterior.nc", "report.html", "map.json", "diagnostics.json"):
        assert (results / name).is_file(), name
    # each stage ran as a SLURM job: its sbatch log (named by the SLURM job id) and its line in the cluster's
    # job-completion log, COMPLETED on partition debug
    completed = {}
    for line in (cluster / "log" / "jobcomp.log").read_text().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        completed[fields["JobId"]] = (fields["JobState"], fields["Partition"])
    for rule in ("ingest", "fit_map", "fit", "predict", "design", "report"):
        logs = list((tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}" / "one_shift").glob("*.log"))
        assert len(logs) == 1, (rule, logs)
        assert completed.get(logs[0].stem) == ("COMPLETED", "debug"), (rule, logs[0].stem, completed)
        assert f"Finished jobid: 0 (Rule: {rule})" in logs[0].read_text(), rule
    assert re.search(r"submitted with SLURM jobid \d+ \(log: .*rule_fit/", run.stdout + run.stderr)
