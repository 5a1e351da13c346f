"""Set-up: one place for the pins, the same pins in environment.yml, the README's two commands."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]


def pins(requirements) -> dict[str, str]:
    out = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", req.strip())
        if match:
            out[match.group(1).lower()] = match.group(3)
    return out


@pytest.mark.parametrize("env_file, package", [("environment.yml", "-e ."), ("workflow/envs/pipeline.yaml", "-e ../..")])
def test_conda_environments_list_the_same_pins_as_pyproject(env_file, package):
    """The workstation's environment and the rules' (`--sdm conda`): pyproject's pins, jax's CUDA build, and the
    package itself by a path relative to the file (conda resolves it so)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    assert all("==" in d for d in declared), "every dependency is pinned exactly"
    env = yaml.safe_load((ROOT / env_file).read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == pins(declared)
    assert any(d.startswith("jax[cuda12]==") for d in pip_section), "the workstation gets jax's CUDA build"
    assert package in pip_section and (ROOT / env_file).parent.joinpath(package.split()[1], "pyproject.toml").is_file()
    extras = project["optional-dependencies"]
    assert extras["cuda"] == [f"jax[cuda12]=={pins(declared)['jax']}"], "pip's GPU route: the same jax"
    for name in ("jax", "diffrax", "numpyro", "equinox", "optax", "arviz"):
        assert name in pins(declared)


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_licence_and_citation_name_this_release():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == project["version"]
    assert cff["license"] == project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
