"""Semantic recipe checks that JSON Schema cannot express: paths that must exist
(relative to the recipe file), known builtin names, fields a source type does not
use, and sizes a recipe can never reach. Each problem is located in the YAML."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .builtin import CLIP_MODELS as BUILTIN_CLIP
from .builtin import PIPELINES as BUILTIN_PIPELINES
from .errors import Problem
from .sources import FILE_TYPES
from .yamlsafe import Document, dotted

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
HF_URL = re.compile(r"^hf://datasets/[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*/.+$")

def looks_local(value: str, base: Path) -> bool:
    return value.startswith((".", "/", "~")) or (base / value).exists() or not HUB_ID.match(value)

def semantic_problems(data: dict, doc: Document, file: str, base: Path) -> list[Problem]:
    problems = []

    def bad(path, message, key=False):
        line, col = doc.locate(path, key=key)
        problems.append(Problem(file, line, col, dotted(path), message))

    names = {}
    for i, src in enumerate(data["captions"]["sources"]):
        at = ("captions", "sources", i)
        kind, path = src["type"], src["path"]
        only_tables = ("column", "id_column", "config", "split")
        unused = {"llava_json": only_tables, "text": only_tables, "hf_dataset": ()}.get(kind, ("config", "split"))
        for key in unused:
            if at + (key,) in doc.key_positions:  # set by the author, not a default
                bad(at + (key,), f"is not used by {kind} sources", key=True)
        if kind in FILE_TYPES:
            if path.startswith("hf://"):
                if not HF_URL.match(path):
                    bad(at + ("path",), "hf:// paths must look like hf://datasets/<org>/<name>/<file>")
            elif not (base / os.path.expanduser(path)).is_file():
                bad(at + ("path",), f"caption file not found: {base / os.path.expanduser(path)}")
            elif "revision" in src:
                bad(at + ("revision",), "revision applies to hf:// paths and hf_dataset sources only")
        elif looks_local(path, base) and not (base / os.path.expanduser(path)).exists():
            bad(at + ("path",), f"not a local dataset folder ({base / path} does not exist) nor a Hub id org/name")
        name = src.get("name") or default_source_name(kind, path)
        if name in names:
            bad(at + ("name",) if "name" in src else at + ("path",),
                f"source name {name!r} is already used by captions.sources[{names[name]}]; set a distinct name")
        names.setdefault(name, i)

    gen = data["generate"]
    model = gen["model"]
    if model.startswith("builtin:"):
        if model[8:] not in BUILTIN_PIPELINES:
            bad(("generate", "model"), f"unknown builtin model {model!r}; known: "
                + ", ".join("builtin:" + b for b in BUILTIN_PIPELINES))
    elif looks_local(model, base):
        where = base / os.path.expanduser(model)
        if not (where / "model_index.json").is_file():
            bad(("generate", "model"), f"local model directory {where} does not exist or has no model_index.json"
                " (expected a diffusers pipeline saved with save_pretrained, or a Hub id org/name)")
    if "revision" in gen and (model.startswith("builtin:") or looks_local(model, base)):
        bad(("generate", "revision"), "revision applies to Hub model ids only")

    clip = data["score"]["clip"]
    if clip["model"].startswith(("local-dir:", "hf-hub:")):
        if "pretrained" in clip:
            bad(("score", "clip", "pretrained"), f"{clip['model'].split(':')[0]}: models carry their own weights;"
                " remove pretrained")
        folder = base / os.path.expanduser(clip["model"][len("local-dir:"):])
        if clip["model"].startswith("local-dir:") and not (folder / "open_clip_config.json").is_file():
            bad(("score", "clip", "model"), f"{folder} has no open_clip_config.json (expected an open_clip model"
                " folder: open_clip_config.json + weights)")
    elif clip["model"].startswith("builtin:"):
        if clip["model"][8:] not in BUILTIN_CLIP:
            bad(("score", "clip", "model"), f"unknown builtin model {clip['model']!r}; known: "
                + ", ".join("builtin:" + b for b in BUILTIN_CLIP))
        elif "pretrained" in clip:
            bad(("score", "clip", "pretrained"), "builtin models carry their own weights; remove pretrained")
    elif "pretrained" not in clip:
        bad(("score", "clip", "pretrained"), f"required for open_clip model {clip['model']!r}"
            " (a tag such as openai, or a checkpoint file); without it the weights would be random")
    elif is_file_like(clip["pretrained"]) and not (base / os.path.expanduser(clip["pretrained"])).is_file():
        bad(("score", "clip", "pretrained"), f"checkpoint file not found: {base / clip['pretrained']}")

    for j, prompt in enumerate(data.get("format", {}).get("prompts") or []):
        if "<image>" in prompt:
            bad(("format", "prompts", j), "must not contain <image>; it is appended to every instruction")

    sel, sources = data["select"], data["captions"]["sources"]
    if all("limit" in s for s in sources) and not sel.get("allow_fewer"):
        most = sum(s["limit"] for s in sources)
        if sel.get("per_caption") == "all":
            most *= gen.get("images_per_caption", 1)
        if sel["size"] > most:
            bad(("select", "size"), f"{sel['size']} rows can never be selected: the sources' limits allow at most"
                f" {most} candidates; lower size or set allow_fewer: true")
    return problems

def is_file_like(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith((".pt", ".pth", ".bin", ".safetensors"))

def default_source_name(kind: str, path: str) -> str:
    stem = path.rstrip("/").split("/")[-1]
    if kind != "hf_dataset":
        stem = stem.split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) or kind
