"""The recipe schema: generated, validated against, and its errors made readable.

The schema is the core's (core.schema.json: the recipe's own fields) with every installed component's
fragment put in its place (registry.py): caption steps under captions.filters, scores under score,
screens under screen, their thresholds in select, each executor's options under execution, and the
names of the caption sources, generator backends and executors as the enums of their fields. So a
plugin's parameters are validated, located and defaulted like a built-in's. schemas/recipe.schema.json is
the schema of the built-in components, written by `python -m synthvlm_builder.recipe.docs --write` and
checked against this by a test (it is what editors and other tools read).
"""
from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path

import jsonschema

from ..errors import Problem
from .yamlsafe import Document, dotted

CORE = Path(__file__).with_name("core.schema.json")


def build_schema(reg) -> dict:
    """The recipe schema with the components of registry `reg`."""
    out = json.loads(CORE.read_text())
    _place(out, reg)
    return out


def _place(node: dict, reg) -> None:
    if not isinstance(node, dict):
        return
    kind = node.pop("x-component-names", None)
    if kind:
        comps = reg.all(kind)
        node["enum"] = [c.name for c in comps]
        node["description"] = node["description"].rstrip(".") + ": " + "; ".join(
            f"{c.name} ({c.summary.rstrip('.')})" if c.summary else c.name for c in comps) + "."
    kind = node.pop("x-components", None)
    if kind:
        props, required = node.setdefault("properties", {}), node.setdefault("required", [])
        for cls in reg.all(kind):
            if cls.schema:
                props[cls.name] = _fragment(cls)
                if cls.required and cls.name not in required:
                    required.append(cls.name)
            props.update(copy.deepcopy(cls.siblings))
        if not required:
            node.pop("required")
    kind = node.pop("x-component-options", None)
    if kind:  # the keys a source reads beyond the shared ones (checks.py refuses them on other sources)
        for cls in reg.all(kind):
            node["properties"].update(copy.deepcopy((cls.schema or {}).get("properties", {})))
    where = node.pop("x-thresholds", None)
    if where:
        props = node["properties"]
        cut = list(props).index(where["before"])
        offered = {name: copy.deepcopy(sub) for kind in ("score", "screen") for cls in reg.all(kind)
                   for name, sub in cls.thresholds.items()}
        node["properties"] = {**dict(list(props.items())[:cut]), **offered, **dict(list(props.items())[cut:])}
    for value in list(node.values()):
        if isinstance(value, dict):
            _place(value, reg)


def _fragment(cls) -> dict:
    """A component's schema, marked for the fingerprint (execution/plan.py data_view): its operational
    fields change no data (x-data: false); its fields added since its recipes were published (`later`),
    and every field of a component that came after the registry (x-new), count only when set."""
    out = copy.deepcopy(cls.schema)
    props = out.get("properties") or {}
    for key in cls.operational:
        props[key]["x-data"] = False
    for key in cls.later:
        props[key]["x-later"] = True
    if not cls.legacy:
        out["x-new"] = True
    elif cls.legacy == "later":  # null in the resolved recipe when unused, but then out of the fingerprint
        out["x-later"] = True
    return out


def schema() -> dict:
    """The schema of the components installed now (one per registry, which is cached)."""
    from ..registry import registry
    reg = registry()
    cached = _SCHEMAS.get(id(reg))
    if cached is None or cached[0] is not reg:
        cached = _SCHEMAS[id(reg)] = (reg, build_schema(reg))
    return cached[1]


_SCHEMAS: dict = {}


def schema_path() -> Path:
    """The built-in components' schema, as written for editors and other tools."""
    return Path(__file__).resolve().parents[2] / "schemas" / "recipe.schema.json"


# --- schema errors -> readable, located messages ---------------------------------

def _describe(value) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "mapping", type(None): "null"}.get(type(value), type(value).__name__)
    text = json.dumps(value) if not isinstance(value, (dict, list)) else kind
    return f"{kind} {text}" if kind not in ("list", "mapping", "null") else kind


def _component_kind(path: tuple) -> str | None:
    from .components import SECTIONS
    return next((kind for kind, place in SECTIONS.items() if tuple(path) == place and kind != "executor"), None)


def schema_problems(doc: Document, file: str) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for err in validator.iter_errors(doc.data):
        path = tuple(err.absolute_path)
        sub = err.schema if isinstance(err.schema, dict) else {}
        v = err.validator
        if v == "additionalProperties":
            allowed = list(sub.get("properties", {}))
            kind = _component_kind(path)
            for key in sorted(set(err.instance) - set(allowed)):
                hint = difflib.get_close_matches(key, allowed, n=1)
                if kind:  # a component: say which are installed (a plugin's appear once it is)
                    from ..registry import registry
                    names = registry().names(kind)
                    msg = (f"unknown {kind.replace('_', ' ')} {key!r}"
                           + (f"; did you mean {hint[0]!r}?" if hint else "")
                           + f" (installed: {', '.join(names)}; a plugin's components appear once its package is"
                           " installed and listed under plugins)")
                else:
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
