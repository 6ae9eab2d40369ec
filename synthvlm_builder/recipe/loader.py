"""Recipe loading: YAML -> JSON Schema -> semantic checks -> frozen dataclasses.

Every problem is collected and raised at once as a RecipeError whose lines read
`FILE:LINE:COL: field.path: message`. Nothing here loads a model or writes a file.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path

from ..errors import InputError, Problem, RecipeError
from . import config as C
from .checks import default_source_name, semantic_problems
from .paths import resolve_paths
from .plugins import plugin_problems, unlisted_problems
from .schema import fill_defaults, schema, schema_problems
from .strings import string_problems
from .typed import build_recipe, recipe_to_dict  # noqa: F401 (recipe_to_dict: this package's API)
from .yamlsafe import YamlProblem, dotted, parse

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


def apply_preset(filters: dict) -> dict:
    """The preset's values, overridden field by field by explicit keys."""
    merged = copy.deepcopy(PRESETS[filters.get("preset", "none")])
    for key, value in filters.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_recipe_text(text: str, file: str | os.PathLike = "<recipe>", base: Path | None = None) -> C.Recipe:
    file = str(file)
    base = Path(base) if base is not None else (Path(file).resolve().parent if file != "<recipe>" else Path.cwd())
    try:
        doc = parse(text)
    except YamlProblem as p:
        raise RecipeError([Problem(file, p.line, p.col, dotted(p.path), p.message)]) from None
    problems = schema_problems(doc, file)
    reported = {(p.line, p.col, p.field) for p in problems}  # an unknown key with a line break: said once
    problems += [p for p in string_problems(doc, file) if (p.line, p.col, p.field) not in reported]
    problems += plugin_problems(doc, file)
    data = fill_defaults(copy.deepcopy(doc.data), schema())
    if not problems:
        problems = semantic_problems(data, doc, file, base) + unlisted_problems(data, doc, file)
    if problems:
        raise RecipeError(sorted(problems, key=lambda p: (p.line, p.col, p.field)))
    data["captions"]["filters"] = apply_preset(data["captions"].get("filters", {}))
    for src in data["captions"]["sources"]:
        src.setdefault("name", default_source_name(src["type"], src["path"]))
    resolve_paths(data, base)
    recipe = build_recipe(data)
    path = Path(file).resolve() if Path(file).is_file() else None
    return dataclasses.replace(recipe, path=path, base=base.resolve(), text=text)


def recipe_from_dict(data: dict, base: Path) -> C.Recipe:
    """A recipe from its resolved plain form (a lock file's `recipe`: defaults filled, preset merged, paths
    relative to the recipe file), relative paths taken against `base`. Reads no input and checks no file:
    the caller checks the result against the fingerprint recorded beside it. KeyError/TypeError/ValueError
    when `data` is not such a form."""
    data = copy.deepcopy(data)
    resolve_paths(data, base)
    return dataclasses.replace(build_recipe(data), base=Path(base).resolve())


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
    if rev.startswith("-"):  # never let a recipe argument reach git as an option (e.g. --output=FILE)
        raise RecipeError([Problem(spec, 1, 1, "(file)", f"{rev!r} is not a git revision (it starts with '-')")])
    import subprocess
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    shown = subprocess.run(["git", "show", "--end-of-options", f"{rev}:{rel}"], capture_output=True,
                           cwd=top.stdout.strip() or None)
    if top.returncode or shown.returncode:
        raise RecipeError([Problem(spec, 1, 1, "(file)", "cannot read recipe from git: "
                                   + (shown.stderr or top.stderr or b"").decode(errors="replace").strip())])
    base = Path(top.stdout.strip(), rel).parent
    return load_recipe_text(shown.stdout.decode("utf-8", errors="replace"), spec, base=base)


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


def locate_error(e: InputError, recipe: C.Recipe) -> InputError:
    """`e`, when it is about a field of `recipe` not yet located, with its Problem located there (the API
    does this for every recipe it is given, the CLI for the recipe file a verb read)."""
    if e.unlocated:
        file, line, col = locate(recipe, e.field)
        e.problems = [Problem(file, line, col, e.field, e.message)]
    return e
