"""Recipe loading: YAML -> JSON Schema -> semantic checks -> frozen dataclasses.

Every problem is collected and raised at once as a RecipeError whose lines read
`FILE:LINE:COL: field.path: message`. Nothing here loads a model or writes a file.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import re
import typing
from functools import lru_cache
from pathlib import Path

import jsonschema

from . import config as C
from .checks import default_source_name, is_file_like, looks_local, semantic_problems
from .errors import Problem, RecipeError
from .sources import FILE_TYPES
from .yamlsafe import Document, YamlProblem, dotted, parse

# The paper's caption filters (SynthVLM appendix, Table 1), as Data-Juicer defines them.
PRESETS = {
    "synthvlm": {
        "alnum_ratio": {"min": 0.60},
        "char_repetition": {"rep_len": 10, "max": 0.0937},
        "word_repetition": {"rep_len": 10, "max": 0.0309},
        "special_char_ratio": {"min": 0.165, "max": 0.420},
        "flagged_words": {"max": 0.0},
    },
    "none": {},
}



def schema_path() -> Path:
    """The schema ships inside the wheel; in a source checkout it is schemas/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "recipe.schema.json", here.parent / "schemas" / "recipe.schema.json"):
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


def _schema_problems(doc: Document, file: str) -> list[Problem]:
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
        elif v == "pattern":
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


# --- defaults, presets -------------------------------------------------------------

def _resolve_ref(node: dict) -> dict:
    if "$ref" in node:
        target = schema()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _fill_defaults(value, node: dict):
    node = _resolve_ref(node)
    if isinstance(value, dict) and "properties" in node:
        for key, sub in node["properties"].items():
            sub = _resolve_ref(sub)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _fill_defaults(value[key], sub)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value = [_fill_defaults(v, node["items"]) for v in value]
    return value


def apply_preset(filters: dict) -> dict:
    """The preset's values, overridden field by field by explicit keys."""
    merged = copy.deepcopy(PRESETS[filters.get("preset", "none")])
    for key, value in filters.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


# --- dataclass construction --------------------------------------------------------

def _build(cls, value):
    """Build frozen dataclass `cls` from validated plain data (tuples for lists)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in value:
            kwargs[f.name] = _coerce(hints[f.name], value[f.name])
    return cls(**kwargs)


def _coerce(hint, value):
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union:
        return _coerce(args[0], value)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if typing.get_origin(hint) is tuple:
        inner = args[0] if args else object
        return tuple(_coerce(inner, v) for v in value)
    if hint is float:
        return float(value)
    return value


def _resolve_paths(data: dict, base: Path) -> None:
    for src in data["captions"]["sources"]:
        src.setdefault("name", default_source_name(src["type"], src["path"]))
        local = src["type"] in FILE_TYPES and not src["path"].startswith("hf://")
        if local or (src["type"] == "hf_dataset" and looks_local(src["path"], base)):
            src["path"] = str((base / os.path.expanduser(src["path"])).resolve())
    gen = data["generate"]
    if not gen["model"].startswith("builtin:") and looks_local(gen["model"], base):
        gen["model"] = str((base / os.path.expanduser(gen["model"])).resolve())
    clip = data["score"]["clip"]
    if clip["model"].startswith("local-dir:"):
        clip["model"] = "local-dir:" + str((base / os.path.expanduser(clip["model"][10:])).resolve())
    if clip.get("pretrained") and is_file_like(clip["pretrained"]):
        clip["pretrained"] = str((base / os.path.expanduser(clip["pretrained"])).resolve())
    if data.get("output", {}).get("dir"):
        data["output"]["dir"] = str((base / os.path.expanduser(data["output"]["dir"])).resolve())


def load_recipe_text(text: str, file: str | os.PathLike = "<recipe>", base: Path | None = None) -> C.Recipe:
    file = str(file)
    base = Path(base) if base is not None else (Path(file).resolve().parent if file != "<recipe>" else Path.cwd())
    try:
        doc = parse(text)
    except YamlProblem as p:
        raise RecipeError([Problem(file, p.line, p.col, dotted(p.path), p.message)]) from None
    problems = _schema_problems(doc, file)
    data = _fill_defaults(copy.deepcopy(doc.data), schema())
    if not problems:
        problems = semantic_problems(data, doc, file, base)
    if problems:
        raise RecipeError(sorted(problems, key=lambda p: (p.line, p.col, p.field)))
    data["captions"]["filters"] = apply_preset(data["captions"].get("filters", {}))
    _resolve_paths(data, base)
    data["generate"]["resolution"] = tuple(data["generate"]["resolution"])
    recipe = _build(C.Recipe, data)
    path = Path(file).resolve() if Path(file).is_file() else None
    return dataclasses.replace(recipe, path=path, base=base.resolve(), text=text)


def load_recipe(path: str | os.PathLike) -> C.Recipe:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RecipeError([Problem(str(path), 1, 1, "(file)", f"cannot read recipe: {e.strerror or e}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RecipeError([Problem(str(path), line, 1, "(file)", "recipe is not valid UTF-8")]) from None
    return load_recipe_text(text, path)


def load_recipe_any(spec: str) -> C.Recipe:
    """A recipe file, or REV:PATH read from git (for reviewing a PR against main).
    A git recipe's relative paths resolve against PATH's folder in the work tree."""
    rev, sep, rel = spec.partition(":")
    if Path(spec).exists() or not sep or not rev or not rel:
        return load_recipe(spec)
    import subprocess
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    shown = subprocess.run(["git", "show", f"{rev}:{rel}"], capture_output=True, cwd=top.stdout.strip() or None)
    if top.returncode or shown.returncode:
        raise RecipeError([Problem(spec, 1, 1, "(file)", "cannot read recipe from git: "
                                   + (shown.stderr or top.stderr or b"").decode(errors="replace").strip())])
    base = Path(top.stdout.strip(), rel).parent
    return load_recipe_text(shown.stdout.decode("utf-8", errors="replace"), spec, base=base)


def recipe_to_dict(recipe: C.Recipe) -> dict:
    """The resolved recipe as plain JSON-able data (without path/text)."""
    out = dataclasses.asdict(recipe)
    for key in ("path", "base", "text"):
        out.pop(key)
    return json.loads(json.dumps(out))


def locate(recipe: C.Recipe, field: str) -> tuple[str, int, int]:
    """FILE, LINE, COL of a dotted field path such as captions.sources[1].column."""
    file = str(recipe.path) if recipe.path else "<recipe>"
    try:
        doc = parse(recipe.text)
    except YamlProblem:
        return file, 1, 1
    parts: list = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    line, col = doc.locate(tuple(parts))
    return file, line, col
