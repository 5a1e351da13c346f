"""Synthetic blot datasets simulated from the network, with their truth.

A spec (`pipeline/schemas/simulation.schema.yaml`, e.g. `data/example/spec.yaml`) names the
lines and their planted mechanism shifts, the experiments (stimulus, pretreatment, times,
doses) and the blot noise. `make(spec)` simulates every line x condition, lays the lanes
out on membranes (the lines of a condition and time side by side, so they share a blot),
draws one scale per blot x target, a loading per lane and log-normal band noise, and
returns the tables of format v1 plus the truth.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml

from pipeline.model import network, parameters, simulate
from pipeline import vocabulary as v
from pipeline.model.drugs import HOW_TO_ADD
from pipeline.problems import InputError, Problem, display_path, one_of
from pipeline.yamlschema import read_yaml, validate


def load_spec(path: str | Path) -> dict:
    """The spec with defaults filled, or `InputError` carrying every problem."""
    shown = display_path(Path(path))
    raw, problems = read_yaml(Path(path))
    if problems:
        raise InputError(problems)
    spec, problems = validate(raw if isinstance(raw, dict) else {}, "simulation", shown)
    if not isinstance(raw, dict):
        problems = [Problem(shown, "must be a mapping of keys to values", fix="start from data/example/spec.yaml")]
    if not problems:
        problems = _check_names(spec, shown)
    if problems:
        raise InputError(problems)
    return spec


def _check_names(spec: dict, shown: str) -> list[Problem]:
    names = parameters.names()
    problems = []
    if spec["reference_line"] not in spec["lines"]:
        problems.append(Problem(shown, "is not one of `lines`", key="reference_line", value=spec["reference_line"],
                                fix=one_of(spec["lines"], spec["reference_line"])))
    elif spec["lines"][spec["reference_line"]].get("shifts"):
        problems.append(Problem(shown, "the reference line cannot carry shifts",
                                key=f"lines.{spec['reference_line']}.shifts", fix="shift the resistant lines only"))
    for name in spec["parameters"]:
        if name not in names:
            problems.append(Problem(shown, "is not a parameter", key=f"parameters.{name}", fix=one_of(names, name)))
    for loop in spec["loops_off"]:
        if loop not in network.LOOPS:
            problems.append(Problem(shown, "is not a feedback loop", key="loops_off", value=loop,
                                    fix=one_of(network.LOOPS, loop)))
    for line, entry in spec["lines"].items():
        for mechanism, folds in entry.get("shifts", {}).items():
            key = f"lines.{line}.shifts.{mechanism}"
            if mechanism not in parameters.MECHANISMS:
                problems.append(Problem(shown, "is not a resistance mechanism", key=key,
                                        fix=one_of(parameters.MECHANISMS, mechanism)))
                continue
            own = parameters.mechanism_parameters(mechanism)
            for name in folds:
                if name not in own:
                    problems.append(Problem(shown, f"is not a parameter of {mechanism}", key=f"{key}.{name}",
                                            fix=one_of(own, name)))
    for i, exp in enumerate(spec["experiments"]):
        for dose in exp["doses"]:
            for drug in dose:
                if drug not in v.DRUGS:
                    problems.append(Problem(shown, "is not a known drug", key=f"experiments.{i}.doses",
                                            value=drug, fix=f"{one_of(v.DRUGS, drug)}; {HOW_TO_ADD}"))
    return problems


def line_values(spec: dict) -> dict[str, dict[str, float]]:
    """Full parameter values of each line: nominal, then spec `parameters` and `loops_off`, then the line's shifts."""
    base = {**parameters.nominal(), **spec["parameters"], **network.loop_overrides(spec["loops_off"])}
    out = {}
    for line, entry in spec["lines"].items():
        values = dict(base)
        for folds in entry.get("shifts", {}).values():
            for name, fold in folds.items():
                values[name] *= fold
                if parameters.is_fraction(name) and values[name] > 1:
                    raise InputError([Problem("spec", f"shifting {name} by {fold} gives {values[name]:g} > 1",
                                              key=f"lines.{line}.shifts", fix="use a fold change that keeps it <= 1")])
        out[line] = values
    return out


def _dose_label(doses: dict) -> str:
    return "+".join(f"{d}_{x:g}" for d, x in doses.items() if x > 0) or "vehicle"


def make(spec: dict) -> tuple[list[dict], list[dict], dict]:
    """(conditions rows, measurements rows, truth) of the synthetic dataset."""
    rng = np.random.default_rng(spec["seed"])
    lines = [spec["reference_line"]] + [x for x in spec["lines"] if x != spec["reference_line"]]
    values = line_values(spec)
    drugs = [d for d in v.DRUGS if any(d in dose for e in spec["experiments"] for dose in e["doses"])]

    conditions, runs = [], []  # runs: (condition row, line index, times)
    for exp in spec["experiments"]:
        for dose in exp["doses"]:
            for li, line in enumerate(lines):
                row = {v.CONDITION_ID: f"{line}_{exp['id']}_{_dose_label(dose)}", v.CELL_LINE: line,
                       v.STIMULUS: exp["stimulus"],
                       v.STIMULUS_CONC: exp["stimulus_conc"] if exp["stimulus"] != "none" else 0,
                       v.PRETREATMENT_MIN: exp["pretreatment_min"],
                       **{v.dose_column(d): dose.get(d, 0) for d in drugs}}
                conditions.append(row)
                runs.append((row, li, sorted(set(exp["times_min"]))))

    width = max(len(t) for _, _, t in runs)
    times = np.array([np.pad(t, (0, width - len(t)), mode="edge") for _, _, t in runs], dtype=float)
    conds = simulate.conditions(line=[li for _, li, _ in runs], stimulus=[r[v.STIMULUS] for r, _, _ in runs],
                                doses_uM=[{d: r[v.dose_column(d)] for d in drugs} for r, _, _ in runs],
                                pretreatment_min=[r[v.PRETREATMENT_MIN] for r, _, _ in runs])
    matrix = np.stack([parameters.as_array(values[line]) for line in lines])
    sim = simulate.simulate(matrix, conds, times)
    if not bool(np.all(sim.ok)):
        bad = [r[v.CONDITION_ID] for (r, _, _), ok in zip(runs, np.asarray(sim.ok)) if not ok]
        raise InputError([Problem("spec", f"the simulation failed for {', '.join(bad)}",
                                  fix="check the planted parameter values (extreme values make the model stiff)")])
    obs = np.asarray(sim.observables)

    # lanes: (condition, time) with the lines of the same experiment/dose/time side by side
    noise = spec["noise"]
    target_idx = [v.TARGETS.index(t) for t in spec["targets"]]
    lanes = [(ci, ti) for start in range(0, len(runs), len(lines))
             for ti in range(len(runs[start][2])) for ci in range(start, start + len(lines))]
    per_blot = max(len(lines), spec["lanes_per_blot"] // len(lines) * len(lines))
    measurements, scales = [], {}
    for rep in range(1, noise["replicates"] + 1):
        for b, first in enumerate(range(0, len(lanes), per_blot), start=1):
            blot = f"rep{rep}_blot{b:02d}"
            for target in spec["targets"]:
                scales[f"{blot}/{target}"] = float(noise["scale_median"] * 10 ** rng.normal(0, noise["scale_sigma_log10"]))
            for ci, ti in lanes[first:first + per_blot]:
                loading = noise["loading_median"] * np.exp(rng.normal(0, noise["loading_sigma"]))
                for target, j in zip(spec["targets"], target_idx):
                    signal = scales[f"{blot}/{target}"] * obs[ci, ti, j] * loading / noise["loading_median"] \
                        * np.exp(rng.normal(0, noise["sigma"]))
                    measurements.append({v.BLOT_ID: blot, v.CONDITION_ID: runs[ci][0][v.CONDITION_ID],
                                         v.TIME_MIN: runs[ci][2][ti], v.TARGET: target,
                                         v.SIGNAL: float(f"{signal:.6g}"), v.LOADING: float(f"{loading:.6g}"),
                                         v.REPLICATE: rep})
    truth = {
        "seed": spec["seed"],
        "sigma": noise["sigma"],
        "shifts": {line: spec["lines"][line].get("shifts", {}) for line in lines},
        "parameters_changed": {line: {k: x for k, x in values[line].items() if x != parameters.nominal()[k]}
                               for line in lines},
        "loops_off": spec["loops_off"],
        "scales": scales,
    }
    return conditions, measurements, truth


def write(spec: dict, folder: Path) -> None:
    """Write dataset.yaml, conditions.csv, measurements.csv, truth.yaml, truth_parameters.csv and spec.yaml."""
    conditions, measurements, truth = make(spec)
    meta = {"name": spec["name"], "description": spec["description"], "reference_line": spec["reference_line"],
            "provenance": "simulated by `python -m pipeline simulate-dataset spec.yaml` from the network model at "
                          "the parameter values of truth_parameters.csv; the planted shifts and blot scales are "
                          "in truth.yaml; spec.yaml is the spec it was made from"}
    (folder / v.DATASET_YAML).write_text(yaml.safe_dump(meta, sort_keys=False, width=100), encoding="utf-8")
    _write_csv(folder / v.CONDITIONS_CSV, conditions)
    _write_csv(folder / v.MEASUREMENTS_CSV, measurements)
    (folder / "truth.yaml").write_text(yaml.safe_dump(truth, sort_keys=False, width=100), encoding="utf-8")
    values = line_values(spec)
    lines = list(truth["shifts"])
    _write_csv(folder / "truth_parameters.csv",
               [{"name": n, **{line: values[line][n] for line in lines}} for n in parameters.names()])
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, width=100), encoding="utf-8")


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
