# The analyses of this run and the config of each stage.
#
# One analysis: the config itself. Many: `analyses: <sheet.tsv>` in the config (e.g. --config
# analyses=config/analyses.tsv), one row per analysis (columns analysis, dataset, overrides), each the config
# with its row's dataset and overrides. Every analysis's config is validated against the package's schema here,
# before anything runs.
#
# A stage reads its config from results/<analysis>/config/<stage>.yaml, written by the local rule
# `stage_config` whose params are the config sections that stage reads (STAGE_SECTIONS): Snakemake reruns a
# stage when one of its sections changes (or an input does), and only then; e.g. a new summary.threshold_log2
# reruns summarise, design and report, not the MAP fits or the sampler.
import copy
import csv
import json
import os
import re

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = "../../pipeline/schemas/config.schema.yaml"  # the package's schema (relative to this file)
CONDA_ENV = "../envs/pipeline.yaml"  # (relative to the rule files)

MODEL = ["analysis", "dataset", "petab", "seed", "model", "prior", "solver"]
STAGE_SECTIONS = {  # the config sections each stage reads
    "simulate": MODEL + ["simulate"],
    "fit_map": MODEL + ["map"],
    "fit": MODEL + ["sampler", "nuts"],
    "summarise": ["analysis", "summary"],
    "predict": MODEL + ["predict"],
    "design": MODEL + ["predict", "design", "summary"],
    "report": None,  # all of it
}
SHEET_COLUMNS = ("analysis", "dataset", "overrides")


def _override(cfg: dict, item: str) -> None:
    """`a.b.c=value` (value read as YAML) set in cfg."""
    key, value = item.split("=", 1)
    *path, last = key.strip().split(".")
    node = cfg
    for k in path:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"'{key.strip()}': '{k}' is not a section")
    node[last] = yaml.safe_load(value)


def _sheet(path: str, base: dict) -> dict:
    """{analysis: raw config} from the sheet; every problem of the sheet reported at once."""
    if not os.path.isfile(path):
        return {}, [f"{path}: the analyses sheet does not exist (config key `analyses`): give a TSV file "
                            f"with the columns {', '.join(SHEET_COLUMNS)} (config/analyses.tsv is an example)"]
    with open(path, newline="", encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    header = list(rows[0]) if rows else []
    problems = [f"{path}: missing column '{c}' (the columns: analysis, dataset, and optionally overrides, "
                "tab-separated)" for c in SHEET_COLUMNS[:2] if c not in header]
    out = {}
    for n, row in enumerate(rows if not problems else [], start=2):
        name, dataset = (row.get("analysis") or "").strip(), (row.get("dataset") or "").strip()
        if not name or not dataset:
            problems.append(f"{path}, row {n}: empty analysis or dataset: give both")
            continue
        if name in out:
            problems.append(f"{path}, row {n}, column analysis: '{name}' appears twice: give each analysis its "
                            "own name")
            continue
        cfg = copy.deepcopy(base)
        for item in (x.strip() for x in (row.get("overrides") or "").split(";")):
            if not item:
                continue
            try:
                if "=" not in item:
                    raise ValueError(f"'{item}' is not key=value")
                _override(cfg, item)
            except (ValueError, yaml.YAMLError) as e:
                problems.append(f"{path}, row {n}, column overrides: {e}: write e.g. summary.threshold_log2=0.5; "
                                "sampler.chains=4")
        cfg["analysis"] = name
        petab = dataset.endswith((".yaml", ".yml"))  # a PEtab problem's YAML, else a blot dataset folder
        cfg.pop("petab" if not petab else "dataset", None)
        cfg["petab" if petab else "dataset"] = dataset
        out[name] = cfg
    if not rows and not problems:
        problems.append(f"{path}: no analyses: add one row per analysis")
    return out, problems


def _analyses(config: dict) -> tuple[dict, dict]:
    """({analysis: raw config}, {analysis: config with the schema's defaults filled}); every problem of the sheet
    and of each analysis's config reported at once."""
    base = {k: x for k, x in config.items() if k != "analyses"}
    raw, problems = _sheet(config["analyses"], base) if "analyses" in config else ({base.get("analysis"): base}, [])
    filled = {}
    for name, cfg in raw.items():
        full = copy.deepcopy(cfg)
        try:
            validate(full, SCHEMA)
        except WorkflowError as e:
            problems.append(f"analysis '{name}': {e}")
            continue
        filled[full["analysis"]] = full
    if problems:
        raise WorkflowError("\n".join(problems))
    return {c["analysis"]: raw[n] for n, c in zip(raw, filled.values())}, filled


RAW, CONFIGS = _analyses(config)
BLOTS = [a for a, c in CONFIGS.items() if "petab" not in c]
PETABS = [a for a, c in CONFIGS.items() if "petab" in c]
SHEET = "analyses" in config


def _names(names) -> str:
    """A wildcard constraint matching exactly these names (none: a pattern matching nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


BLOT_NAMES, PETAB_NAMES = _names(BLOTS), _names(PETABS)  # the wildcard constraints of each kind's rules


def is_petab(analysis: str) -> bool:
    return analysis in PETABS


def variants(analysis: str) -> list[str]:
    return [x["name"] for x in CONFIGS[analysis].get("variants", [])]


def compare_inputs(analysis: str) -> list[str]:
    return [f"results/{analysis}/compare.csv"] if variants(analysis) else []


def decide_outputs(analysis: str) -> list[str]:
    return [f"results/{analysis}/reversal.csv", f"results/{analysis}/design.csv"]


def stage_config(stage: str, variant: bool = False):
    """The input function of a stage's config file."""
    if variant:
        return lambda w: f"results/{w.analysis}/variants/{w.variant}/config/{stage}.yaml"
    return lambda w: f"results/{w.analysis}/config/{stage}.yaml"


def stage_sections(analysis: str, stage: str, variant: str | None = None) -> str:
    """What the stage reads of the analysis's config (defaults filled), as JSON: the rerun trigger."""
    cfg = CONFIGS[analysis]
    keys = STAGE_SECTIONS[stage] or sorted(cfg)
    out = {k: cfg[k] for k in keys if k in cfg}
    if variant is not None:
        out["variant"] = next(x for x in cfg["variants"] if x["name"] == variant)
    return json.dumps(out, sort_keys=True)


def analysis_targets(analysis: str) -> list[str]:
    r = f"results/{analysis}"
    if is_petab(analysis):
        return [f"{r}/posterior.nc", f"{r}/predictive.png", f"{r}/report.html"]
    return ([f"{r}/data.nc", f"{r}/simulation.nc", f"{r}/posterior.nc", f"{r}/shifts.csv", f"{r}/report.html"]
            + compare_inputs(analysis) + decide_outputs(analysis))


TARGETS = [t for a in CONFIGS for t in analysis_targets(a)]
if SHEET and BLOTS:
    TARGETS.append("results/analyses.csv")


def write_config(cfg: dict, path: str, log: str) -> None:
    """The analysis's config as given (its sheet row applied), atomically."""
    tmp = f"{path}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("# written by the workflow (workflow/rules/analyses.smk) for one stage of this analysis\n")
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"wrote {path}\n")


def dataset_files(w) -> dict:
    folder = CONFIGS[w.analysis]["dataset"]
    return {k: f"{folder}/{f}" for k, f in
            (("meta", "dataset.yaml"), ("conditions", "conditions.csv"), ("measurements", "measurements.csv"))}


def chain_threads(w) -> int:
    """One core per chain (chain_method processes on a CPU), capped by what Snakemake grants."""
    return CONFIGS[w.analysis]["sampler"]["chains"]
