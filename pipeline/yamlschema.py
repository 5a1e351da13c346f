"""YAML files checked against JSON schemas: every problem at once, defaults filled.

The schemas live in `pipeline/schemas/`. Each property's `description` doubles as
the fix shown to the user when its value is wrong.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from pipeline.problems import Problem, display_path, one_of

SCHEMA_DIR = Path(str(resources.files("pipeline") / "schemas"))


@cache
def schema(name: str) -> dict:
    """A schema of `pipeline/schemas/<name>.schema.yaml`."""
    with open(SCHEMA_DIR / f"{name}.schema.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def read_yaml(path: Path) -> tuple[object, list[Problem]]:
    """Parse a YAML file; a missing, unreadable or malformed file is a problem, not an exception."""
    shown = display_path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        return None, [Problem(shown, what, fix="create it or correct the path")]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        return None, [Problem(shown, f"is not UTF-8 text ({e.reason})", line=line, fix="save it as UTF-8")]
    except OSError as e:
        return None, [Problem(shown, f"cannot be read ({e.strerror})", fix="check the file's permissions")]
    if not text.strip():
        return None, [Problem(shown, "is empty", fix="fill it in (see the worked example in data/README.md)")]
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(e, "problem", None) or str(e).splitlines()[0]
        return None, [Problem(shown, f"is not valid YAML: {reason}", line=line, fix="correct the YAML syntax on that line")]


def _fill_defaults(validator_class):
    """Extend a validator so that it writes schema defaults into the instance (as snakemake.utils.validate does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, sch):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, props, instance, sch)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def validate(instance: object, schema_name: str, file: str) -> tuple[object, list[Problem]]:
    """Validate against a schema, filling defaults; returns (filled instance, problems)."""
    sch = schema(schema_name)
    filled = copy.deepcopy(instance) if instance is not None else {}
    problems = [_problem(err, sch, file) for err in _Validator(sch).iter_errors(filled)]
    problems.sort(key=lambda p: (p.key or "", p.message))
    return filled, problems


def _problem(err: jsonschema.ValidationError, sch: dict, file: str) -> Problem:
    path = [str(p) for p in err.absolute_path]
    key = ".".join(path) if path else None
    value = err.instance if path else None
    fix = _describe(sch, err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(_subschema(sch, err.absolute_path).get("properties", {}))
        extra = sorted(str(k) for k in set(err.instance) - set(allowed))
        where = ".".join(path + [extra[0]]) if extra else key
        return Problem(file, "is not a known key", key=where,
                       fix=one_of(allowed, extra[0] if extra else None) + " (or delete it)")
    if err.validator == "required":
        missing = err.message.split("'")[1]
        sub = _subschema(sch, err.absolute_path).get("properties", {}).get(missing, {})
        return Problem(file, "is required but missing", key=".".join(path + [missing]),
                       fix=f"add it: {sub.get('description', missing)}")
    if err.validator == "oneOf" and all(set(alt) == {"required"} for alt in err.validator_value):
        keys = [alt["required"][0] for alt in err.validator_value]
        given = [k for k in keys if isinstance(err.instance, dict) and k in err.instance]
        what = "; ".join(f"'{k}': {_subschema(sch, err.absolute_path).get('properties', {}).get(k, {}).get('description', k)}"
                         for k in keys)
        return Problem(file, f"needs exactly one of {' or '.join(repr(k) for k in keys)}"
                       + (f" (it has {' and '.join(repr(k) for k in given)})" if given else " (it has none; 'dataset' is required, or 'petab')"),
                       key=key, fix=f"give one: {what}")
    if err.validator == "const":
        return Problem(file, f"must be {err.validator_value!r}", key=key, value=value, fix=fix)
    if err.validator == "enum":
        return Problem(file, "is not an allowed value", key=key, value=value, fix=one_of(err.validator_value, value))
    message = err.message.replace(repr(err.instance), "", 1).strip() if path else err.message
    if not message.startswith(("is ", "does ", "should ")):
        message = "is invalid: " + message
    return Problem(file, message, key=key, value=value, fix=fix)


def _subschema(sch: dict, path) -> dict:
    node = sch
    for part in path:
        props = node.get("properties", {})
        if part in props:
            node = props[part]
        elif "items" in node:
            node = node["items"]
        else:
            return {}
    return node


def _describe(sch: dict, path) -> str:
    return _subschema(sch, path).get("description", "")
