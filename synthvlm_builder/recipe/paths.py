"""The recipe's path-valued fields, in one table.

On load every relative path is resolved against the recipe file; wherever a recipe must read the
same in every checkout (the fingerprint, the lock file, `plan --json`), the same fields are written
relative to it again. Both walks use `path_slots`, so a new path field is added in one place.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from ..models.ref import ModelRef, pretrained_is_file

FILE_TYPES = ("llava_json", "jsonl", "csv", "parquet", "text")  # caption sources read from one file


def source_is_local(src: dict, base: Path) -> bool:
    """A file source's local path, or an hf_dataset given as a local dataset folder."""
    if src["type"] in FILE_TYPES:
        return not src["path"].startswith("hf://")
    return ModelRef.parse(src["path"], base=base).is_local


def path_slots(data: dict, base: Path) -> Iterator[tuple[dict, str, str]]:
    """(mapping, key, prefix) for every local path in a plain recipe dict: mapping[key] is
    prefix + path."""
    for src in data["captions"]["sources"]:
        if source_is_local(src, base):
            yield src, "path", ""
    for mapping, clip in _models(data):
        ref = ModelRef.parse(mapping["model"], clip=clip, base=base)
        if ref.is_local:
            yield mapping, "model", ref.scheme
        if clip and mapping.get("pretrained") and pretrained_is_file(mapping["pretrained"]):
            yield mapping, "pretrained", ""
    for src in data["captions"]["sources"]:
        if src.get("images"):
            yield src, "images", ""
    filters = data["captions"].get("filters") or {}
    for key in ("model", "tokenizer") if filters.get("perplexity") else ():
        if not filters["perplexity"][key].startswith("hf://"):
            yield filters["perplexity"], key, ""
    if (data.get("output") or {}).get("dir"):
        yield data["output"], "dir", ""


def _models(data: dict) -> Iterator[tuple[dict, bool]]:
    """(mapping with a `model` key, whether it names an open_clip model) for every model field."""
    yield data["generate"], False
    yield data["score"]["clip"], True
    aesthetic = data["score"].get("aesthetic")
    if aesthetic:
        yield aesthetic, False  # the head: a local file or a Hub repo id
        yield aesthetic["clip"], True
    for name in ("nsfw", "watermark"):
        screen = (data.get("screen") or {}).get(name)
        if screen:
            yield screen, False
    images = (data["captions"].get("filters") or {}).get("source_image") or {}
    if images.get("clip"):
        yield images["clip"], True
    if images.get("itm"):
        yield images["itm"], False


def resolve_paths(data: dict, base: Path) -> None:
    """Make every local path absolute (relative ones are taken against `base`)."""
    for mapping, key, prefix in list(path_slots(data, base)):
        path = os.path.expanduser(mapping[key][len(prefix):])
        mapping[key] = prefix + str((base / path).resolve())


def portable_paths(data: dict, base: Path) -> None:
    """Write every absolute path relative to `base`, with '/' separators."""
    for mapping, key, prefix in list(path_slots(data, base)):
        path = mapping[key][len(prefix):]
        if os.path.isabs(path):
            mapping[key] = prefix + os.path.relpath(path, base).replace(os.sep, "/")
