"""Pipeline families: what each diffusers text-to-image pipeline takes from a recipe.

Tested families (tests/test_families.py): Stable Diffusion 1.x/2.x, SDXL, SD3 / SD3.5, FLUX.1, SANA and
PixArt-Sigma. A pipeline's class is read from its model_index.json (no weights loaded), so `validate`
can refuse a field the family does not take, at the field, before any work.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

from .ref import BUILTIN, LOCAL, ModelRef

BUILTIN_CLASSES = {"tiny-sd": ("StableDiffusionPipeline", "PNDMScheduler"),
                   "tiny-sdxl": ("StableDiffusionXLPipeline", "EulerDiscreteScheduler"),
                   "shapes-sd": ("StableDiffusionPipeline", "DDIMScheduler")}

# Call options that make a pipeline draw exactly the requested caption at exactly the requested size:
# SANA and PixArt would otherwise generate at the nearest "bin" size and resize, and rewrite captions
# with their own cleaning rules (the caption is already curated).
EXACT = {"use_resolution_binning": False, "clean_caption": False}


def model_index(model: str, revision: str | None = None, base: Path | None = None) -> dict | None:
    """The pipeline's model_index.json, for a builtin, a local folder or a Hub model in the local cache."""
    ref = ModelRef.parse(model, base=base)
    if ref.kind == BUILTIN:
        if ref.name not in BUILTIN_CLASSES:
            return None
        cls, scheduler = BUILTIN_CLASSES[ref.name]
        return {"_class_name": cls, "scheduler": ["diffusers", scheduler]}
    if ref.kind == LOCAL:
        path = ref.path(base) / "model_index.json"
    else:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(ref.name, "model_index.json", revision=revision)
        path = Path(cached) if isinstance(cached, str) else None
    try:
        return json.loads(path.read_text()) if path and path.is_file() else None
    except (OSError, ValueError):
        return None


def call_parameters(pipeline_cls) -> dict:
    return dict(inspect.signature(pipeline_cls.__call__).parameters)


def exact_options(pipeline_cls) -> dict:
    params = call_parameters(pipeline_cls)
    return {k: v for k, v in EXACT.items() if k in params}


def refused_fields(index: dict, generate: dict) -> list[tuple[str, str]]:
    """(generate.<field>, message) for each recipe field this pipeline cannot honour."""
    import diffusers

    name = index.get("_class_name")
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if cls is None:
        return []
    params = call_parameters(cls)
    problems = []
    if generate.get("negative_prompt"):
        if "negative_prompt" not in params:
            problems.append(("negative_prompt", f"{name} takes no negative prompt; leave it empty for this model"))
        elif "true_cfg_scale" in params:
            problems.append(("negative_prompt", f"{name} is guidance-distilled: it ignores a negative prompt"
                             " (diffusers uses one only with true CFG, which costs a second denoiser pass and"
                             " recipes do not set); leave it empty for this model"))
    scheduler = generate.get("scheduler")
    current = (index.get("scheduler") or [None, None])[1]
    if scheduler and isinstance(current, str) and hasattr(diffusers, current):
        from .loading import SCHEDULERS, scheduler_fits
        if scheduler in SCHEDULERS:
            ok, fitting = scheduler_fits(getattr(diffusers, current), scheduler)
            if not ok:
                problems.append(("scheduler", f"{scheduler!r} does not fit {name}, whose {current} can be replaced"
                                 f" by: {', '.join(fitting)}"))
    return problems
