"""The recipe's path-valued fields, in one table.

On load every relative path is resolved against the recipe file; wherever a recipe must read the
same in every checkout (the fingerprint, the lock file, `plan --json`), the same fields are written
relative to it again. Both walks use `path_slots`, so a new path field is added in one place.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from ..hub import is_hf_url
from ..models.ref import ModelRef, pretrained_is_file
from ..registry import registry
from ..storage import is_url
from .components import model_uses


def file_type(source_type: str) -> bool:
    """Whether a source of this type reads one file (curation/reading.py CaptionSource.file)."""
    cls = registry().find("source", source_type)
    return cls is not None and cls.file


def source_is_local(src: dict, base: Path) -> bool:
    """A file source's local path, or a non-file source (hf_dataset) given as a local folder."""
    if file_type(src["type"]):
        return not is_hf_url(src["path"])
    return ModelRef.parse(src["path"], base=base).is_local


def path_slots(data: dict, base: Path) -> Iterator[tuple[dict, str, str]]:
    """(mapping, key, prefix) for every local path in a plain recipe dict: mapping[key] is
    prefix + path: local caption sources and their image folders, every model a component names
    (recipe/components.py model_uses) and the output dir."""
    for src in data["captions"]["sources"]:
        if source_is_local(src, base):
            yield src, "path", ""
    for use in model_uses(data):
        if use.kind == "file":
            if not is_hf_url(use.model):
                yield use.holder, use.key, ""
            continue
        ref = ModelRef.parse(use.model, clip=use.kind == "clip", base=base)
        if ref.is_local:
            yield use.holder, use.key, ref.scheme
        if use.kind == "clip" and use.pretrained and pretrained_is_file(use.pretrained):
            yield use.holder, "pretrained", ""
    for src in data["captions"]["sources"]:
        if src.get("images"):
            yield src, "images", ""
    if (data.get("output") or {}).get("dir") and not is_url(data["output"]["dir"]):  # s3://...: a store (storage.py)
        yield data["output"], "dir", ""


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
