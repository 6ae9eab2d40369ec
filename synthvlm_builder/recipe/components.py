"""Where components sit in a recipe, and what a recipe's components say about it.

    caption_step   captions.filters.<name>          score   score.<name>        screen   screen.<name>
    executor       execution.<name> (its options)    source  captions.sources[].type
    generator      generate.backend (its settings are generate's own fields)

Everything that reads components through a recipe (the loader, the checks, the paths, the content
identity, preflight, the lock, the card, `plan`, the row schema, selection) asks here, so none keeps a
list of its own.
"""
from __future__ import annotations

from typing import Any, Iterator

from ..registry import registry

SECTIONS = {"caption_step": ("captions", "filters"), "score": ("score",), "screen": ("screen",),
            "executor": ("execution",)}


def section(data: dict, kind: str) -> dict:
    """The plain mapping of `kind`'s section in plain recipe data (empty when absent)."""
    node: Any = data
    for key in SECTIONS[kind]:
        node = (node or {}).get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def plain_enabled(data: dict, kind: str) -> list[tuple[type, Any, tuple]]:
    """(component class, plain value, its path) of every component of `kind` plain recipe data sets."""
    reg = registry()
    if kind == "source":
        return [(reg.get("source", src["type"]), src, ("captions", "sources", i))
                for i, src in enumerate(data["captions"]["sources"]) if reg.find("source", src["type"])]
    if kind == "generator":
        gen = data["generate"]
        cls = reg.find("generator", gen.get("backend") or "diffusers")
        return [(cls, gen, ("generate",))] if cls else []
    place = section(data, kind)
    return [(cls, place[cls.name], SECTIONS[kind] + (cls.name,)) for cls in reg.all(kind)
            if place.get(cls.name) is not None]


def enabled(recipe, kind: str) -> list[tuple[type, Any]]:
    """(component class, typed config) of every component of `kind` the recipe turns on, in order."""
    reg = registry()
    if kind == "source":
        return [(reg.get("source", s.type), s) for s in recipe.captions.sources]
    if kind == "generator":
        return [(reg.get("generator", recipe.generate.backend), recipe.generate)]
    place = {"caption_step": recipe.captions.filters, "score": recipe.score, "screen": recipe.screen,
             "executor": recipe.execution}[kind]
    return [(cls, place[cls.name]) for cls in reg.all(kind) if place.get(cls.name) is not None
            and (kind != "caption_step" or cls.enabled(place[cls.name]))]


def model_uses(data: dict) -> list:
    """Every model (models/uses.py ModelUse) plain recipe data names: the generator's, then each
    caption step's, score's and screen's, in order."""
    uses = []
    for kind in ("generator", "caption_step", "score", "screen"):
        for cls, value, at in plain_enabled(data, kind):
            uses += cls.models(value, at)
    return uses


def caption_readers(data: dict) -> list[tuple[str, str, str]]:
    """(field, model, prefix) of every CLIP that reads the captions (models/uses.py caption_prefix)."""
    return [(use.field, use.model, use.caption_prefix) for use in model_uses(data)
            if use.kind == "clip" and use.caption_prefix is not None]


def components_of(data: dict) -> Iterator[tuple[type, Any, tuple]]:
    """Every component plain recipe data uses, of every kind."""
    for kind in ("source", "generator", "caption_step", "score", "screen"):
        yield from plain_enabled(data, kind)
    cls = registry().find("executor", (data.get("execution") or {}).get("executor") or "local")
    if cls is not None:
        yield cls, None, ("execution", "executor")


def recipe_components(recipe) -> list[type]:
    """Every component class a typed recipe uses."""
    from .typed import recipe_to_dict
    return [cls for cls, _, _ in components_of(recipe_to_dict(recipe))]


def plugins_used(data: dict) -> dict[str, str]:
    """distribution -> version of the plugins whose components plain recipe data uses."""
    return dict(sorted({cls.origin.distribution: cls.origin.version for cls, _, _ in components_of(data)
                        if not cls.origin.builtin}.items()))


def threshold_owners() -> dict[str, type]:
    """select field -> the score or screen that offers it."""
    return {name: cls for kind in ("score", "screen") for cls in registry().all(kind) for name in cls.thresholds}
