"""A recipe's plain data (validated, defaults filled, paths resolved) <-> its typed, frozen form
(recipe/config.py), and back to the plain resolved form the lock, `plan --json` and the fingerprint read.

Component sections (recipe/components.py) become Sections whose keys follow the schema's order: each
component's value becomes its own typed config (registry.py `Component.config`); a component published
before the registry (`legacy`) that the recipe leaves out is None there, as it always was in the
resolved recipe, and any other left out is absent, so a new component leaves every existing resolved
recipe, lock and fingerprint as it was.
"""
from __future__ import annotations

import copy
import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

from ..registry import build_dataclass, registry
from . import config as C
from .components import SECTIONS, threshold_owners
from .schema import schema
from .yamlsafe import dotted

CORE_SOURCE_KEYS = {f.name for f in dataclasses.fields(C.SourceConfig)} - {"options"}


def build_recipe(data: dict) -> C.Recipe:
    """The typed recipe of plain recipe data (a loaded YAML, or a lock's resolved recipe)."""
    captions = data["captions"]
    sources = tuple(_source(s) for s in captions["sources"])
    filters = _section(captions.get("filters") or {}, "caption_step")
    fields = {
        "name": data["name"], "version": data["version"],
        "captions": C.CaptionsConfig(sources, filters),
        "generate": build_dataclass(C.GenerateConfig, _generate(data["generate"])),
        "score": _section(data.get("score") or {}, "score"),
        "select": _select(data["select"]),
        "screen": _section(data.get("screen") or {}, "screen"),
        "execution": _section(data.get("execution") or {}, "executor"),
    }
    for name, cls in (("format", C.FormatConfig), ("output", C.OutputConfig), ("publish", C.PublishConfig),
                      ("costs", C.CostsConfig)):
        if data.get(name) is not None:
            fields[name] = build_dataclass(cls, data[name])
    for name in ("description", "license", "seed"):
        if name in data:
            fields[name] = data[name]
    fields["plugins"] = tuple(data.get("plugins") or ())
    return C.Recipe(**fields)


def _generate(value: dict) -> dict:
    """generate's plain data, typed where build_dataclass cannot tell: adaptive best-of-k's
    `images_per_caption: {max, until}` (the resolved recipe, and so a lock, keeps the same form)."""
    value = {**value, "resolution": tuple(value["resolution"])}
    ipc = value.get("images_per_caption")
    if isinstance(ipc, dict):
        value["images_per_caption"] = C.AdaptiveK(int(ipc["max"]), C.StopRule(float(ipc["until"]["min_score"])))
    return value


def filters_section(**values) -> C.Section:
    """captions.filters from keyword values (typed configs or plain ones), defaults filled, as a recipe
    setting them would give (for code and tests that build a caption stage without a recipe)."""
    return _section(values, "caption_step")


def select_section(**values) -> C.Section:
    """select from keyword values, as filters_section."""
    return _select(values)


def screen_section(**values) -> C.Section:
    return _section(values, "screen")


def _source(value: dict) -> C.SourceConfig:
    own = {k: v for k, v in value.items() if k not in CORE_SOURCE_KEYS}
    core = {k: v for k, v in value.items() if k in CORE_SOURCE_KEYS}
    return build_dataclass(C.SourceConfig, core) if not own else dataclasses.replace(
        build_dataclass(C.SourceConfig, core), options=C.Section("source options", own))


def _node(kind: str) -> dict:
    node = schema()
    for key in SECTIONS[kind]:
        node = node["properties"][key]
    return node


def _section(value: dict, kind: str) -> C.Section:
    reg = registry()
    items: dict[str, Any] = {}
    for key, sub in _node(kind).get("properties", {}).items():
        cls = reg.find(kind, key)
        if key not in value and "default" in sub:  # a section the recipe leaves out has its defaults too
            value = {**value, key: copy.deepcopy(sub["default"])}
        if key in value:
            items[key] = cls.config(value[key]) if cls is not None else _plain(value[key])
        elif cls is not None and cls.legacy:
            items[key] = None
    for key in value:  # a key the schema does not know (an older lock's): kept as it was
        if key not in items:
            items[key] = _plain(value[key])
    return C.Section(dotted(SECTIONS[kind]), items, partial(_registered, kind))


def _registered(kind: str, name: str) -> bool:
    """Whether `name` is a component of `kind`: a section reads its unset components as None. A function,
    not a closure, so that a recipe pickles (the Ray executor ships it to its actors)."""
    return registry().find(kind, name) is not None


def _select(value: dict) -> C.Section:
    owners = threshold_owners()
    items: dict[str, Any] = {}
    for key, sub in schema()["properties"]["select"]["properties"].items():
        if key in value:
            items[key] = value[key]
        elif "default" in sub:
            items[key] = copy.deepcopy(sub["default"])
        elif key in owners and owners[key].legacy:
            items[key] = None
    items.update({k: v for k, v in value.items() if k not in items})
    return C.Section("select", items, frozenset(owners).__contains__)


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


def recipe_to_dict(recipe: C.Recipe) -> dict:
    """The resolved recipe as plain JSON-able data (without path/text)."""
    out = plain(recipe)
    for key in ("path", "base", "text"):
        out.pop(key, None)
    return out


def plain(obj: Any) -> Any:
    if isinstance(obj, C.Section):
        return {k: plain(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("omit_default") and value == f.default:
                continue
            if f.metadata.get("flatten"):
                out.update(plain(value))
            else:
                out[f.name] = plain(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
