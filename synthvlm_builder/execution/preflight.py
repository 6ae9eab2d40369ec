"""The build's preflight: every model, package and endpoint the recipe names is checked, cheaply, before
the output dir is touched, any caption is curated or any image generated (README "Reliability").

A model the recipe points at that is incomplete or unreadable (models/preflight.py BrokenModel) is
bad input at its field (exit 2); one that cannot be had now (offline, not cached, gated) is a runtime
failure (exit 1). What a model is called in the lock, card and plan is decided elsewhere
(models/digests.py); here only whether the build can work. So are the device (`check_device`) and the
cache folder (`check_cache`, settings.py `cache_dir`), where the recipe needs one.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..destination import FOLDER, check_output
from ..errors import InputError
from ..models.builtin import SHIPPED
from ..models.preflight import reported_at as at
from ..recipe import Recipe
from ..reporter import note
from ..settings import CACHE, cache_dir, setting


def preflight(recipe: Recipe, captions: bool = True) -> None:
    """Fail before any work when a model can't be had (offline, not cached, wrong id) or is broken,
    takes no recipe field that is set, or cuts captions max_tokens lets through (validate checks what
    it can without loading; a Hub model, open_clip's own tokenizer and the LLM endpoint are checked here).
    Every model a component names (its `models`) is checked first, then each component's own preflight;
    the caption stage's models and endpoint too, unless `captions` is False (a rebuild of curated captions)."""
    from ..curation.captions import preflight as curation_preflight
    from ..models.uses import check_available
    from ..recipe import recipe_to_dict
    from ..recipe.components import enabled, model_uses
    for use in model_uses(recipe_to_dict(recipe)):
        if use.at[:2] != ("captions", "filters"):  # the caption stage's steps check their own (curation/steps/)
            with at(use.field):
                check_available(use)
    for kind in ("generator", "score", "screen"):
        for cls, cfg in enabled(recipe, kind):
            cls.preflight(cfg)
    if captions:
        curation_preflight(recipe.captions.filters)  # the caption stage's models and LLM endpoint
    caption_length(recipe)


def recipe_contexts(recipe: Recipe):
    """models/context.py's Contexts of every encoder that reads this recipe's captions (configs are
    fetched: the build is about to load the models anyway)."""
    from ..models.context import caption_contexts
    from ..recipe import recipe_to_dict
    from ..recipe.components import caption_readers
    clips = caption_readers(recipe_to_dict(recipe))
    with at("generate.model"):
        return caption_contexts(recipe.generate.model, recipe.generate.revision, clips, fetch=True)


def caption_length(recipe: Recipe) -> None:
    """max_tokens above an encoder's context is refused; without max_tokens, say what gets cut."""
    contexts, limit = recipe_contexts(recipe), recipe.captions.filters.max_tokens
    worst = contexts.over(limit) if limit is not None else None
    if worst is not None:
        raise InputError("captions.filters.max_tokens", worst.refusal(limit))
    cut = contexts.prefix_cut(limit) if limit is not None else None
    if cut is not None:
        note(cut.prefix_note(limit))
    tightest = contexts.tightest()
    if limit is None and tightest is not None:
        prefix = f" less its {tightest.prefix}-token score.clip.prefix" if tightest.prefix else ""
        note(f"captions.filters.max_tokens is not set: a caption of more than {tightest.room} tokens (the"
             f" {tightest.tokens}-token context of {tightest.encoder}{prefix}, {tightest.field}) is cut to fit when"
             f" generating or scoring, while the dataset keeps it whole; set max_tokens to {tightest.room} or less"
             " to drop such captions (or add truncate: true to cut them)")
    if limit is not None and contexts.unchecked:
        note("captions.filters.max_tokens could not be checked against " + ", ".join(contexts.unchecked)
             + ": its config is not at hand")


def check_device(spec: str, field_name: str) -> None:
    """An unusable device is bad input, found before anything is loaded or written."""
    from ..models.loading import resolve_device
    try:
        resolve_device(spec)
    except ValueError as e:
        raise InputError(field_name, str(e)) from None


def check_cache(recipe: Recipe, captions_only: bool = False) -> None:
    """Exit 2 before any work when `recipe` (with `captions_only`, its caption stage) needs the cache
    and it cannot be made or written."""
    if not needs_cache(recipe, captions_only):
        return
    folder = cache_dir()
    if setting(CACHE):
        check_output(folder, CACHE, FOLDER)
        return
    home = Path.home()
    if not home.is_dir():
        raise InputError("HOME", f"{home} is {'not a folder' if home.exists() else 'missing'}, and the cache"
                         f" defaults to {folder}; set HOME, or {CACHE} to a writable folder")
    try:
        check_output(folder, CACHE, FOLDER)
    except InputError as e:
        raise InputError("HOME", f"the cache defaults to {folder} (under HOME), which cannot be used: {e.message};"
                         f" set {CACHE} to a writable folder") from None


def needs_cache(recipe: Recipe, captions_only: bool = False) -> bool:
    """A model step of the caption stage (its values are cached), or (unless `captions_only`) a builtin
    model built on first use."""
    from ..registry import registry
    filters = recipe.captions.filters
    if any(cls.scored and filters.get(cls.name) is not None for cls in registry().all("caption_step")):
        return True  # a model step: its values are cached
    if captions_only:
        return False
    return any(text.startswith("builtin:") and text.removeprefix("builtin:") not in SHIPPED
               for text in _strings(recipe))


def _strings(value):
    """Every string in a recipe (frozen dataclasses, tuples, dicts)."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            if f.name != "text":  # the recipe's own YAML: its comments would count
                yield from _strings(getattr(value, f.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
