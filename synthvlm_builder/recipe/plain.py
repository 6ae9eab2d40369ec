"""A recipe given as a plain Python dict (the API's `Recipe.from_dict`), validated exactly as a file is.

The dict is written as YAML and read back by the real loader, so it meets the same schema, string and
semantic checks and its problems come back as the same located RecipeError (FILE is `<recipe>`, LINE and
COL are positions in that YAML, which becomes the recipe's `text`; the field path is what names the
place). Values YAML cannot hold as plain data are problems at their field before anything is written.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path, PurePath

import yaml

from ..errors import Problem, RecipeError
from .loader import load_recipe_text
from .yamlsafe import YamlProblem, dotted, parse

FILE = "<recipe>"


def recipe_from_data(data: Mapping, base_dir: str | os.PathLike | None = None):
    """A Recipe from a user's dict; relative paths resolve against `base_dir` (default: the current dir)."""
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise RecipeError([Problem(FILE, 1, 1, "(root)", f"a recipe is a mapping of its sections, not a"
                                                         f" {type(data).__name__}")])
    plain = _plain(data, (), problems)
    if problems:
        raise RecipeError(problems)
    return load_recipe_text(to_yaml(plain), FILE, base=Path(base_dir) if base_dir is not None else Path.cwd())


def to_yaml(plain: dict) -> str:
    """Block YAML when the strict reader reads it back as the same data, else JSON (which YAML 1.2 reads
    exactly): PyYAML writes YAML 1.1, where a string such as `1e5` or `0o7` is left unquoted although the
    recipe reader (YAML 1.2 core) would take it for a number."""
    text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=100)
    try:
        if parse(text).data == plain:
            return text
    except YamlProblem:
        pass
    return json.dumps(plain, indent=2, ensure_ascii=False) + "\n"


def _plain(value, path: tuple, problems: list[Problem]):
    """`value` as YAML's plain data (dict, list, str, int, float, bool, None); a problem for anything else."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            problems.append(Problem(FILE, 1, 1, dotted(path), f"{number} is not a finite number"))
        return number
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(Problem(FILE, 1, 1, dotted(path), f"key {key!r} is not a string"))
                continue
            out[key] = _plain(item, path + (key,), problems)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, path + (i,), problems) for i, item in enumerate(value)]
    problems.append(Problem(FILE, 1, 1, dotted(path), f"a {type(value).__name__} is not a recipe value (mappings,"
                                                      " lists, strings, numbers, booleans and null are)"))
    return None
