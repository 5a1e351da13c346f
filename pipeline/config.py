"""Analysis configs (`config/<analysis>.yaml`), checked against `pipeline/schemas/config.schema.yaml`.

The Snakefile validates the same file against the same schema with
`snakemake.utils.validate`; the defaults live in the schema only.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from pipeline.model import parameters
from pipeline.model.drugs import HOW_TO_ADD
from pipeline.model.variant import shiftable
from pipeline.problems import InputError, Problem, display_path, one_of
from pipeline.vocabulary import DRUGS, STIMULI, TARGETS
from pipeline.yamlschema import SCHEMA_DIR, read_yaml, validate

SCHEMA_PATH = SCHEMA_DIR / "config.schema.yaml"


def load(source: str | Path | dict) -> dict:
    """The config with defaults filled, or `InputError` carrying every problem found. `source`: a YAML file,
    or a dict of the same keys (not changed; its problems name "config"). Paths in it (`dataset`, `petab`)
    are relative to the directory you run from, in a file as in a dict."""
    if isinstance(source, dict):
        shown, raw, problems = "config", source, []
    else:
        shown = display_path(Path(source))
        raw, problems = read_yaml(Path(source))
    if problems:
        raise InputError(problems)
    if not isinstance(raw, dict):
        raise InputError([Problem(shown, "must be a mapping of keys to values",
                                  fix="start from config/config.yaml")])
    raw, problems = _renamed(raw, shown)
    if problems:
        raise InputError(problems)
    config, problems = validate(raw, "config", shown)
    if not problems:
        problems = _check_sampler(config["sampler"], shown)
    if not problems and "petab" in config:
        if not Path(config["petab"]).is_file():
            problems.append(Problem(shown, "is not a file", key="petab", value=config["petab"],
                                    fix="give the PEtab problem's YAML file (relative to the directory you run from)"))
        if problems:
            raise InputError(problems)
        return config
    if not problems:
        problems = _check_names(config, shown) + _check_variants(config, shown)
    if not problems and not Path(config["dataset"]).is_dir():
        problems.append(Problem(shown, "is not a dataset folder", key="dataset", value=config["dataset"],
                                fix="give the folder that holds dataset.yaml, conditions.csv and measurements.csv "
                                    "(relative to the directory you run from)"))
    if problems:
        raise InputError(problems)
    return config



def _renamed(raw: dict, shown: str) -> tuple[dict, list[Problem]]:
    """Deprecated section names read as their new ones, with a message on stderr: `nuts:` is `sampler:`."""
    if "nuts" not in raw:
        return raw, []
    if "sampler" in raw:
        return raw, [Problem(shown, "has both `nuts:` (the old name) and `sampler:`", key="nuts",
                             fix="move the keys of nuts: into sampler: and delete nuts:")]
    print(f"{shown}: `nuts:` is deprecated and was read as `sampler:` (the same keys); rename it to "
          "`sampler:` to silence this message", file=sys.stderr)
    return {("sampler" if k == "nuts" else k): x for k, x in raw.items()}, []


def _check_sampler(cfg: dict, shown: str) -> list[Problem]:
    """ChEES adapts one step size and trajectory length across chains that run in lockstep; a pilot window
    lies inside warmup, with warmup left after it."""
    problems = []
    lo, hi = cfg["pilot_window"]
    if cfg["mass_init"] == "pilot" and not lo < hi < 1:
        problems.append(Problem(shown, "has a pilot window that is empty or reaches the end of warmup",
                                key="sampler.pilot_window", value=cfg["pilot_window"],
                                fix="give two fractions of warmup, the first below the second, the second below 1 "
                                    "(e.g. [0.3, 0.8])"))
    if cfg["method"] != "chees":
        return problems
    if cfg["mass_init"] == "pilot":
        problems.append(Problem(shown, "asks for a pilot mass matrix from ChEES, which adapts its own",
                                key="sampler.mass_init", value="pilot",
                                fix="set sampler.method: nuts, or sampler.mass_init: hessian"))
    if cfg["chains"] < 2:
        problems.append(Problem(shown, "runs ChEES with one chain; its adaptation pools the chains",
                                key="sampler.chains", value=cfg["chains"],
                                fix="set sampler.chains to 2 or more (16+ on a GPU)"))
    if cfg["chain_method"] not in ("auto", "vectorized"):
        problems.append(Problem(shown, "ChEES runs its chains vectorized (in lockstep)", key="sampler.chain_method",
                                value=cfg["chain_method"], fix="set sampler.chain_method: auto, or vectorized"))
    return problems


BASE = "base"  # the config's own model among the variants of the `compare` stage


def variant(config: dict, name: str) -> dict:
    """The config of one model variant (`variants` in the config; `base`: the config itself)."""
    if name == BASE:
        return config
    named = {x["name"]: x for x in config["variants"]}
    if name not in named:
        raise InputError([Problem("config", f"has no variant '{name}'", key="variants",
                                  fix=one_of([BASE, *named], name))])
    out = copy.deepcopy(config)
    out["model"].update(copy.deepcopy(named[name]["model"]))
    out["variants"] = []
    return out


def _check_variants(config: dict, shown: str) -> list[Problem]:
    names = [x["name"] for x in config["variants"]]
    problems = [Problem(shown, "names two variants alike", key="variants", value=n, fix="give each variant its own name")
                for n in sorted({n for n in names if names.count(n) > 1})]
    for i, x in enumerate(config["variants"]):
        if names.count(x["name"]) > 1:
            continue
        changed = set(x["model"])
        if changed & {"shift_mechanisms", "asymmetric_shifts"}:
            changed.add("fixed")  # a fixed parameter of the base that the variant shifts
        own = lambda key: key.startswith("model.") and key.split(".")[1] in changed  # noqa: E731 (not the base's)
        problems += [Problem(p.file, p.message, key=f"variants[{i}].{p.key}", value=p.value, fix=p.fix)
                     for p in _check_names(variant(config, x["name"]), shown) if own(p.key)]
    return problems


def _check_names(config: dict, shown: str) -> list[Problem]:
    """Parameter names in the config must be the table's."""
    names = parameters.names()
    model, problems = config["model"], []
    named = [(f"model.fixed.{n}", n) for n in model["fixed"]]
    named += [("model.estimate", n) for n in model["estimate"] or []]
    named += [(f"simulate.shifts.{line}.{n}", n) for line, folds in config["simulate"]["shifts"].items() for n in folds]
    for key, name in named:
        if name not in names:
            problems.append(Problem(shown, "is not a parameter of the network", key=key, value=name,
                                    fix=one_of(names, name) + " (pipeline/data/parameters.csv)"))
    table = parameters.table()
    for name in model["estimate"] or []:
        if name in names and table.loc[name, "prior"] == "none":
            problems.append(Problem(shown, "has no prior (a structural constant) and cannot be estimated",
                                    key="model.estimate", value=name,
                                    fix="remove it, or give it a prior in pipeline/data/parameters.csv"))
    for name in sorted(set(model["estimate"] or []) & set(model["fixed"])):
        problems.append(Problem(shown, "is both estimated and fixed", key="model.estimate", value=name,
                                fix="remove it from one of model.estimate and model.fixed"))
    problems += _check_decide(config, shown)
    if config["prior"]["integrate_sigma"] and model["noise"] != "lognormal":
        problems.append(Problem(shown, "can integrate sigma out only under log-normal noise",
                                key="prior.integrate_sigma", value=True,
                                fix="set prior.integrate_sigma: false, or model.noise: lognormal"))
    if not model["asymmetric_shifts"]:
        for mechanism, name in shiftable(config):
            if name in model["fixed"]:
                problems.append(Problem(
                    shown, f"is fixed, but mechanism {mechanism} shifts it: fixed in the reference line alone, the "
                    "other lines' shifts would absorb any error of its value (a false call)",
                    key=f"model.fixed.{name}", value=model["fixed"][name],
                    fix=f"remove it from model.fixed (it is then estimated in every line), drop {mechanism} from "
                        "model.shift_mechanisms, or set model.asymmetric_shifts: true if the value is known"))
    return problems


def _check_decide(config: dict, shown: str) -> list[Problem]:
    """Drugs and targets named in `predict:` and `design:` must be the drug table's and the vocabulary's."""
    pred, design = config["predict"], config["design"]
    drugs = [("predict.resists." + line, d) for line, d in pred["resists"].items()]
    drugs += [("predict.reference_dose_uM", d) for d in pred["reference_dose_uM"]]
    drugs += [("predict.drugs", d) for d in pred["drugs"] or []]
    drugs += [("predict.doses_uM", d) for d in pred["doses_uM"]]
    drugs += [(f"predict.treatments[{i}]", d) for i, t in enumerate(pred["treatments"]) for d in t]
    problems = [Problem(shown, "is not a drug of pipeline/data/drugs.csv", key=key, value=d,
                        fix=one_of(DRUGS, d) + f"; {HOW_TO_ADD}") for key, d in drugs if d not in DRUGS]
    targets = [("predict.readouts", t) for t in pred["readouts"]] + [("design.targets", t) for t in design["targets"] or []]
    problems += [Problem(shown, "is not a target", key=key, value=t, fix=one_of(TARGETS, t))
                 for key, t in targets if t not in TARGETS]
    if pred["stimulus"] is not None and pred["stimulus"] not in STIMULI:
        problems.append(Problem(shown, "is not a stimulus", key="predict.stimulus", value=pred["stimulus"],
                                fix=one_of(STIMULI, pred["stimulus"])))
    return problems
