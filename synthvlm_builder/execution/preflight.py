"""The build's preflight: every model, package and endpoint the recipe names is checked, cheaply, before
the output dir is touched, any caption is curated or any image generated (README "Reliability").

A model the recipe points at that is incomplete or unreadable (models/preflight.py BrokenModel) is
bad input at its field (exit 2); one that cannot be had now (offline, not cached, gated) is a runtime
failure (exit 1). What a model is called in the lock, card and plan is decided elsewhere
(models/digests.py); here only whether the build can work.
"""
from __future__ import annotations

import importlib.util
from contextlib import contextmanager

from ..errors import BuildError, InputError
from ..reporter import note
from ..recipe import Recipe


@contextmanager
def at(field: str):
    """Model problems inside the block, reported at recipe field `field`."""
    from ..models.preflight import BrokenModel, ModelUnavailable
    try:
        yield
    except BrokenModel as e:
        raise InputError(getattr(e, "field", None) or field, str(e)) from None
    except ModelUnavailable as e:
        raise BuildError(str(e)) from None


def preflight(recipe: Recipe) -> None:
    """Fail before any work when a model can't be had (offline, not cached, wrong id) or is broken,
    takes no recipe field that is set, or cuts captions max_tokens lets through (validate checks what
    it can without loading; a Hub model, open_clip's own tokenizer and the LLM endpoint are checked here)."""
    from ..curation.captions import preflight as curation_preflight
    from ..models.families import model_index, refused_fields
    from ..models.preflight import check_clip_available, check_pipeline_available
    g, clip = recipe.generate, recipe.score.clip
    with at("generate.model"):
        check_pipeline_available(g.model, g.revision)
    with at("score.clip.model"):
        check_clip_available(clip.model, clip.pretrained)
    screens(recipe)
    curation_preflight(recipe.captions.filters)  # the caption stage's models and LLM endpoint
    index = model_index(g.model, g.revision)
    for name, message in refused_fields(index, {"negative_prompt": g.negative_prompt, "scheduler": g.scheduler}) \
            if index else ():
        raise InputError(f"generate.{name}", message)
    caption_length(recipe)


def screens(recipe: Recipe) -> None:
    """A screen that is declared but cannot be had, or does not fit its CLIP, stops the build here."""
    from ..models.context import clip_model_cfg
    from ..models.preflight import check_clip_available, check_folder_model_available
    from ..models.screens import aesthetic_input_size, classifier_labels
    near = recipe.screen.near_duplicates
    if near is not None:
        needed = (["imagehash"] if near.phash_distance is not None else []) + ["faiss", "scipy"]
        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        if missing:
            raise BuildError(f"screen.near_duplicates needs {', '.join(missing)}: pip install"
                             " 'synthvlm-builder[screen]'")
    a = recipe.score.aesthetic
    if a is not None:
        with at("score.aesthetic.model"):
            size = aesthetic_input_size(a.model, a.file, a.revision, "the aesthetic head (score.aesthetic.model)")
        with at("score.aesthetic.clip.model"):
            check_clip_available(a.clip.model, a.clip.pretrained)
            cfg = clip_model_cfg(a.clip.model, fetch=True)
        dim = (cfg or {}).get("embed_dim")
        if isinstance(dim, int) and dim != size:
            raise InputError("score.aesthetic.model", f"the head takes {size}-dimensional CLIP image embeddings, but"
                             f" {a.clip.model} (score.aesthetic.clip.model) makes {dim}-dimensional ones; pair the"
                             " head with the CLIP it was trained on (LAION's improved predictor: ViT-L-14, 768)")
    for name in ("nsfw", "watermark"):
        s = getattr(recipe.screen, name)
        if s is None:
            continue
        with at(f"screen.{name}.model"):
            check_folder_model_available(s.model, s.revision, f"the {name} classifier (screen.{name}.model)")
            labels = classifier_labels(s.model, s.revision)
        if labels is not None:
            from ..stages.screen import label_index
            try:
                label_index(labels, s.label)
            except ValueError:
                raise InputError(f"screen.{name}.label", f"{s.label!r} is not a label of {s.model}; its labels:"
                                 f" {', '.join(labels.values())}") from None


def recipe_contexts(recipe: Recipe):
    """models/context.py's Contexts of every encoder that reads this recipe's captions (configs are
    fetched: the build is about to load the models anyway)."""
    from ..models.context import caption_contexts
    clip, images = recipe.score.clip, recipe.captions.filters.source_image
    clips = [("score.clip.model", clip.model, clip.prefix)]
    if images is not None and images.clip is not None:
        clips.append(("captions.filters.source_image.clip.model", images.clip.model, ""))
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

