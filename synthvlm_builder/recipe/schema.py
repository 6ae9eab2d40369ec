"""The recipe schema (schemas/recipe.schema.json, the single source of truth): loading it,
turning its validation errors into located, readable problems, and filling in its defaults."""
from __future__ import annotations

import copy
import difflib
import json
import re
from functools import lru_cache
from pathlib import Path

import jsonschema

from ..errors import Problem
from .yamlsafe import Document, dotted


def schema_path() -> Path:
    """The schema ships inside the wheel; in a source checkout it is schemas/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "recipe.schema.json", here.parent.parent / "schemas" / "recipe.schema.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("recipe.schema.json not found next to the package or in schemas/")


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(schema_path().read_text())


# --- schema errors -> readable, located messages ---------------------------------

def _describe(value) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "mapping", type(None): "null"}.get(type(value), type(value).__name__)
    text = json.dumps(value) if not isinstance(value, (dict, list)) else kind
    return f"{kind} {text}" if kind not in ("list", "mapping", "null") else kind


def schema_problems(doc: Document, file: str) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for err in validator.iter_errors(doc.data):
        path = tuple(err.absolute_path)
        sub = err.schema if isinstance(err.schema, dict) else {}
        v = err.validator
        if v == "additionalProperties":
            allowed = list(sub.get("properties", {}))
            for key in sorted(set(err.instance) - set(allowed)):
                hint = difflib.get_close_matches(key, allowed, n=1)
                msg = f"unknown field {key!r}" + (f"; did you mean {hint[0]!r}?" if hint
                                                  else f"; allowed: {', '.join(allowed)}")
                line, col = doc.locate(path + (key,), key=True)
                problems.append(Problem(file, line, col, dotted(path + (key,)), msg))
            continue
        if v == "required":
            missing = re.match(r"'([^']+)'", err.message).group(1)
            line, col = doc.locate(path)
            problems.append(Problem(file, line, col, dotted(path + (missing,)), "required field is missing"))
            continue
        if v == "type":
            msg = f"must be {'an' if err.validator_value in ('integer', 'object', 'array') else 'a'} " \
                  f"{ {'object': 'mapping', 'array': 'list'}.get(err.validator_value, err.validator_value)}" \
                  f", got {_describe(err.instance)}"
        elif v == "enum":
            msg = f"must be one of {', '.join(map(str, err.validator_value))}; got {_describe(err.instance)}"
        elif v in ("minimum", "maximum"):
            msg = f"must be {'>=' if v == 'minimum' else '<='} {err.validator_value}, got {err.instance}"
        elif v == "multipleOf":
            msg = f"must be a multiple of {err.validator_value}, got {err.instance}"
        elif v in ("pattern", "oneOf"):
            msg = f"{sub.get('x-error', 'has the wrong form')}, got {_describe(err.instance)}"
        elif v in ("minItems", "maxItems"):
            n = err.validator_value
            both = sub.get("minItems") == sub.get("maxItems")
            msg = (f"must have exactly {n} items" if both else
                   f"must have {'at least' if v == 'minItems' else 'at most'} {n} item{'s' if n != 1 else ''}") \
                + f", got {len(err.instance)}"
        elif v == "minLength":
            msg = "must not be empty"
        elif v == "minProperties":
            msg = f"must set at least one of: {', '.join(sub.get('properties', {}))}"
        else:
            msg = err.message
        line, col = doc.locate(path)
        problems.append(Problem(file, line, col, dotted(path), msg))
    return problems


# --- defaults ----------------------------------------------------------------------

def resolve_ref(node: dict) -> dict:
    if "$ref" in node:
        target = schema()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def fill_defaults(value, node: dict):
    node = resolve_ref(node)
    if isinstance(value, dict) and "properties" in node:
        for key, sub in node["properties"].items():
            sub = resolve_ref(sub)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = fill_defaults(value[key], sub)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value = [fill_defaults(v, node["items"]) for v in value]
    return value
