"""Semantic recipe checks that JSON Schema cannot express: paths that must exist
(relative to the recipe file), known builtin names, fields a source type does not
use, and sizes a recipe can never reach. Each problem is located in the YAML.

One function per recipe section, all reporting into one Collector.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..curation.sourcefile import not_a_file
from ..errors import Problem
from ..models.builtin import CLIP_MODELS as BUILTIN_CLIP
from ..models.builtin import ITM_MODELS as BUILTIN_ITM
from ..models.builtin import PIPELINES as BUILTIN_PIPELINES
from ..models.ref import BUILTIN, HUB, LOCAL, ModelRef, pretrained_is_file
from .paths import FILE_TYPES
from .yamlsafe import Document, dotted

HF_URL = re.compile(r"^hf://datasets/[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*/.+$")
HF_MODEL_FILE = re.compile(r"^hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[^/]+)?/.+$")
TABLE_ONLY = ("column", "id_column", "config", "split")


class Collector:
    """Where the checks report: each problem located at its field (or its key) in the YAML."""

    def __init__(self, doc: Document, file: str, base: Path):
        self.doc, self.file, self.base = doc, file, base
        self.problems: list[Problem] = []

    def bad(self, path: tuple, message: str, key: bool = False) -> None:
        line, col = self.doc.locate(path, key=key)
        self.problems.append(Problem(self.file, line, col, dotted(path), message))

    def local(self, path: str) -> Path:
        return self.base / os.path.expanduser(path)


def semantic_problems(data: dict, doc: Document, file: str, base: Path) -> list[Problem]:
    c = Collector(doc, file, base)
    check_sources(c, data["captions"]["sources"])
    check_generate(c, data["generate"])
    check_clip(c, data["score"]["clip"], ("score", "clip"))
    check_screens(c, data)
    check_model_filters(c, data["captions"].get("filters") or {}, data["captions"]["sources"])
    check_max_tokens(c, data)
    check_format(c, data.get("format", {}))
    check_select(c, data["select"], data["captions"]["sources"], data["generate"])
    return c.problems


def check_sources(c: Collector, sources: list[dict]) -> None:
    names: dict[str, int] = {}
    for i, src in enumerate(sources):
        at = ("captions", "sources", i)
        kind, path = src["type"], src["path"]
        unused = {"llava_json": TABLE_ONLY, "text": TABLE_ONLY, "hf_dataset": ()}.get(kind, ("config", "split"))
        unused += ("images",) * (kind != "llava_json") + ("image_column",) * (kind != "hf_dataset")
        for key in unused:
            if at + (key,) in c.doc.key_positions:  # set by the author, not a default
                c.bad(at + (key,), f"is not used by {kind} sources", key=True)
        if kind in FILE_TYPES:
            if path.startswith("hf://"):
                if not HF_URL.match(path):
                    c.bad(at + ("path",), "hf:// paths must look like hf://datasets/<org>/<name>/<file>")
            elif not_a_file(c.local(path)):  # missing, or a directory, FIFO, device: say which
                c.bad(at + ("path",), not_a_file(c.local(path)) if os.path.lexists(c.local(path))
                      else f"caption file not found: {c.local(path)}")
            elif "revision" in src:
                c.bad(at + ("revision",), "revision applies to hf:// paths and hf_dataset sources only")
        elif ModelRef.parse(path, base=c.base).is_local and not c.local(path).exists():
            c.bad(at + ("path",), f"not a local dataset folder ({c.local(path)} does not exist) nor a Hub id org/name")
        name = src.get("name") or default_source_name(kind, path)
        if name in names:
            c.bad(at + ("name",) if "name" in src else at + ("path",),
                  f"source name {name!r} is already used by captions.sources[{names[name]}]; set a distinct name")
        names.setdefault(name, i)


def check_ref(c: Collector, ref: ModelRef, at: tuple, builtins: tuple, marker: str, expected: str) -> None:
    """A model reference at `at`: a known builtin, or a local folder holding `marker`."""
    if ref.kind == BUILTIN and ref.name not in builtins:
        c.bad(at, f"unknown builtin model {str(ref)!r}; known: " + (", ".join("builtin:" + b for b in builtins)
                                                                     or "none of this kind"))
    elif ref.kind == LOCAL and not (ref.path(c.base) / marker).is_file():
        c.bad(at, f"{ref.path(c.base)} does not exist or has no {marker} (expected {expected})")


def check_generate(c: Collector, gen: dict) -> None:
    ref = ModelRef.parse(gen["model"], base=c.base)
    check_ref(c, ref, ("generate", "model"), BUILTIN_PIPELINES, "model_index.json",
              "a diffusers pipeline saved with save_pretrained, or a Hub id org/name")
    if "revision" in gen and ref.kind != HUB:
        c.bad(("generate", "revision"), "revision applies to Hub model ids only")
    if ref.kind in (BUILTIN, LOCAL) and (gen.get("negative_prompt") or gen.get("scheduler")):
        from ..models.families import model_index, refused_fields  # imports diffusers: only when needed
        index = model_index(gen["model"], base=c.base)
        for field, message in refused_fields(index, gen) if index else ():
            c.bad(("generate", field), message)


def check_clip(c: Collector, clip: dict, at: tuple) -> None:
    ref = ModelRef.parse(clip["model"], clip=True, base=c.base)
    check_ref(c, ref, at + ("model",), BUILTIN_CLIP, "open_clip_config.json",
              "an open_clip model folder: open_clip_config.json + weights")
    if ref.kind in (BUILTIN, LOCAL, HUB):
        if "pretrained" in clip:
            what = "builtin models" if ref.kind == BUILTIN else f"{ref.scheme.rstrip(':')}: models"
            c.bad(at + ("pretrained",), f"{what} carry their own weights; remove pretrained")
    elif "pretrained" not in clip:
        c.bad(at + ("pretrained",), f"required for open_clip model {clip['model']!r}"
              " (a tag such as openai, or a checkpoint file); without it the weights would be random")
    elif pretrained_is_file(clip["pretrained"]) and not c.local(clip["pretrained"]).is_file():
        c.bad(at + ("pretrained",), f"checkpoint file not found: {c.local(clip['pretrained'])}")


def check_screens(c: Collector, data: dict) -> None:
    """The aesthetic head and the image classifiers: local files and folders must be there."""
    aesthetic = data["score"].get("aesthetic")
    if aesthetic:
        at = ("score", "aesthetic")
        ref = ModelRef.parse(aesthetic["model"], base=c.base)
        if ref.kind == LOCAL and not ref.path(c.base).is_file():
            c.bad(at + ("model",), f"aesthetic head file not found: {ref.path(c.base)} (a .pth or .safetensors"
                  " state dict, or a Hub repo id org/name)")
        elif ref.kind == BUILTIN:
            c.bad(at + ("model",), "no builtin aesthetic head; give a file or a Hub repo id")
        check_clip(c, aesthetic["clip"], at + ("clip",))
    for name in ("nsfw", "watermark"):
        screen = (data.get("screen") or {}).get(name)
        if not screen:
            continue
        check_ref(c, ModelRef.parse(screen["model"], base=c.base), ("screen", name, "model"), (), "config.json",
                  "a transformers image classifier saved with save_pretrained, or a Hub id org/name")
    if "min_aesthetic" in data["select"] and not aesthetic:
        c.bad(("select", "min_aesthetic"), "needs score.aesthetic (the aesthetic predictor to score with)")


def check_model_filters(c: Collector, filters: dict, sources: list[dict]) -> None:
    """The model steps of the caption stage: their models can be found, their sources carry images."""
    at = ("captions", "filters")
    for key in ("model", "tokenizer") if filters.get("perplexity") else ():
        check_model_file(c, filters["perplexity"][key], at + ("perplexity", key))
    images = filters.get("source_image") or {}
    for i, src in enumerate(sources if images else ()):
        if not {"llava_json": src.get("images"), "hf_dataset": src.get("image_column")}.get(src["type"]):
            c.bad(("captions", "sources", i), f"{dotted(at + ('source_image',))} needs each caption's original image:"
                  " set images (llava_json) or image_column (hf_dataset) on every source")
    for name, cfg in images.items():
        if "min" not in cfg and "max" not in cfg:
            c.bad(at + ("source_image", name), "set min, max or both: without a bound it keeps everything")
    if "clip" in images:
        check_clip(c, images["clip"], at + ("source_image", "clip"))
    if "itm" in images:
        itm, where = images["itm"], at + ("source_image", "itm")
        ref = ModelRef.parse(itm["model"], base=c.base)
        check_ref(c, ref, where + ("model",), BUILTIN_ITM, "config.json",
                  "a BLIP model saved with save_pretrained, or a Hub id org/name")
        if "revision" in itm and ref.kind != HUB:
            c.bad(where + ("revision",), "revision applies to Hub model ids only")
    judge = filters.get("llm_judge")
    if judge and "{caption}" not in judge["prompt"]:
        c.bad(at + ("llm_judge", "prompt"), "must contain {caption}, where each caption goes")


def check_max_tokens(c: Collector, data: dict) -> None:
    """max_tokens fits every text encoder that reads the caption, where their configs are at hand without
    loading anything (builtins, local folders); the build's preflight checks Hub models and the rest."""
    filters = data["captions"].get("filters") or {}
    models = ("generate.model", "score.clip.model", "captions.filters.source_image.clip.model")
    if filters.get("max_tokens") is None or any(p.field in models for p in c.problems):
        return  # a model the other checks refused cannot be read
    from ..models.context import caption_contexts
    from ..models.preflight import BrokenModel
    clip, images = data["score"]["clip"], filters.get("source_image") or {}
    clips = [("score.clip.model", clip["model"], clip.get("prefix", ""))]
    clips += [("captions.filters.source_image.clip.model", images["clip"]["model"], "")] if "clip" in images else []
    try:
        worst = caption_contexts(data["generate"]["model"], data["generate"].get("revision"), clips, c.base
                                 ).over(filters["max_tokens"])
    except BrokenModel as e:
        c.bad(tuple(e.field.split(".")), str(e))
        return
    if worst is not None:
        c.bad(("captions", "filters", "max_tokens"), worst.refusal(filters["max_tokens"]))


def check_model_file(c: Collector, value: str, at: tuple) -> None:
    if value.startswith("hf://"):
        if not HF_MODEL_FILE.match(value):
            c.bad(at, "hf:// model files must look like hf://<org>/<name>[@<revision>]/<file>")
    elif not c.local(value).is_file():
        c.bad(at, f"model file not found: {c.local(value)}")


def check_format(c: Collector, fmt: dict) -> None:
    for j, prompt in enumerate(fmt.get("prompts") or []):
        if "<image>" in prompt:
            c.bad(("format", "prompts", j), "must not contain <image>; it is appended to every instruction")


def check_select(c: Collector, sel: dict, sources: list[dict], gen: dict) -> None:
    if all("limit" in s for s in sources) and not sel.get("allow_fewer"):
        most = sum(s["limit"] for s in sources)
        if sel.get("per_caption") == "all":
            most *= gen.get("images_per_caption", 1)
        if sel["size"] > most:
            c.bad(("select", "size"), f"{sel['size']} rows can never be selected: the sources' limits allow at"
                  f" most {most} candidates; lower size or set allow_fewer: true")


def default_source_name(kind: str, path: str) -> str:
    stem = path.rstrip("/").split("/")[-1]
    if kind != "hf_dataset":
        stem = stem.split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) or kind
