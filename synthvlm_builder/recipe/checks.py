"""Semantic recipe checks that JSON Schema cannot express: paths that must exist (relative to the
recipe file), known builtin names, fields a source type does not use, thresholds on scores the recipe
does not compute, and sizes a recipe can never reach. Each problem is located in the YAML.

The core's sections are checked here; each component checks its own value (registry.py
`Component.check`), with the helpers below for the references they name (`check_model_use`,
`check_clip`, `check_model_file`). All report into one Collector.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from ..atomic import not_a_file
from ..errors import Problem
from ..hub import is_hf_url, parse_hf_url
from ..models.builtin import CLIP_MODELS as BUILTIN_CLIP
from ..models.ref import BUILTIN, HUB, LOCAL, ModelRef, pretrained_is_file
from ..registry import registry
from .components import plain_enabled, threshold_owners
from .yamlsafe import Document, dotted

SOURCE_OPTIONS = ("column", "id_column", "config", "split", "images", "image_column")


class Collector:
    """Where the checks report: each problem located at its field (or its key) in the YAML."""

    def __init__(self, doc: Document, file: str, base: Path):
        self.doc, self.file, self.base = doc, file, base
        self.problems: list[Problem] = []
        self.deferred: list[Callable[[], None]] = []

    def bad(self, path: tuple, message: str, key: bool = False) -> None:
        line, col = self.doc.locate(path, key=key)
        self.problems.append(Problem(self.file, line, col, dotted(path), message))

    def local(self, path: str) -> Path:
        return self.base / os.path.expanduser(path)

    def later(self, check: Callable[[], None]) -> None:
        """A check that reads fields other checks look at: it runs after them (and sees their problems)."""
        self.deferred.append(check)


def semantic_problems(data: dict, doc: Document, file: str, base: Path) -> list[Problem]:
    c = Collector(doc, file, base)
    check_sources(c, data)
    for kind in ("generator", "score", "screen", "caption_step"):
        for cls, value, at in plain_enabled(data, kind):
            cls.check(c, value, at, data)
    check_thresholds(c, data)
    check_max_tokens_tokenizer(c, data)
    check_format(c, data.get("format", {}))
    check_select(c, data["select"], data["captions"]["sources"], data["generate"])
    for check in c.deferred:
        check()
    return c.problems


def check_sources(c: Collector, data: dict) -> None:
    names: dict[str, int] = {}
    reg = registry()
    own_keys = {key for cls in reg.all("source") for key in (cls.schema or {}).get("properties", {})}
    for i, src in enumerate(data["captions"]["sources"]):
        at = ("captions", "sources", i)
        kind, path = src["type"], src["path"]
        cls = reg.get("source", kind)
        uses = set(cls.options) | set((cls.schema or {}).get("properties", {}))
        for key in (*SOURCE_OPTIONS, *sorted(own_keys)):
            if key not in uses and at + (key,) in c.doc.key_positions:  # set by the author, not a default
                c.bad(at + (key,), f"is not used by {kind} sources", key=True)
        if cls.file:
            if is_hf_url(path):
                if hub_file(path, "dataset") is None:
                    c.bad(at + ("path",), "hf:// paths must look like hf://datasets/<org>/<name>/<file>")
            elif not_a_file(c.local(path)):  # missing, or a directory, FIFO, device: say which
                c.bad(at + ("path",), not_a_file(c.local(path)) if os.path.lexists(c.local(path))
                      else f"caption file not found: {c.local(path)}")
            elif "revision" in src:
                c.bad(at + ("revision",), "revision applies to hf:// paths and hf_dataset sources only")
        elif ModelRef.parse(path, base=c.base).is_local and not c.local(path).exists():
            c.bad(at + ("path",), f"not a local dataset folder ({c.local(path)} does not exist) nor a Hub id org/name")
        cls.check(c, src, at, data)
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


MARKERS = {"pipeline": "model_index.json", "folder": "config.json"}


def check_model_use(c: Collector, use) -> None:
    """A pipeline or model-folder reference (models/uses.py ModelUse): a known builtin or a local folder
    holding its marker file; `revision` only for Hub ids."""
    ref = ModelRef.parse(use.model, base=c.base)
    check_ref(c, ref, use.at + (use.key,), use.builtins, MARKERS[use.kind], use.expected)
    if "revision" in use.holder and ref.kind != HUB and use.kind == "folder":
        c.bad(use.at + ("revision",), "revision applies to Hub model ids only")


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


def check_thresholds(c: Collector, data: dict) -> None:
    """A select threshold needs the score (or screen) that computes its column."""
    for name, cls in threshold_owners().items():
        if data["select"].get(name) is not None and not (data.get(cls.kind) or {}).get(cls.name):
            c.bad(("select", name), f"needs {cls.kind}.{cls.name} (the {cls.kind} that computes it)")


def check_max_tokens(c: Collector, data: dict) -> None:
    """max_tokens fits every text encoder that reads the caption, where their configs are at hand without
    loading anything (builtins, local folders); the build's preflight checks Hub models and the rest."""
    from .components import caption_readers
    filters = data["captions"].get("filters") or {}
    clips = caption_readers(data)
    models = ("generate.model", *(field for field, _, _ in clips))
    if filters.get("max_tokens") is None or any(p.field in models for p in c.problems):
        return  # a model the other checks refused cannot be read
    from ..models.context import caption_contexts
    from ..models.preflight import BrokenModel
    try:
        worst = caption_contexts(data["generate"]["model"], data["generate"].get("revision"), clips, c.base
                                 ).over(filters["max_tokens"])
    except BrokenModel as e:
        c.bad(tuple(e.field.split(".")), str(e))
        return
    if worst is not None:
        c.bad(("captions", "filters", "max_tokens"), worst.refusal(filters["max_tokens"]))


def check_max_tokens_tokenizer(c: Collector, data: dict) -> None:
    """max_tokens_tokenizer counts for max_tokens; set alone it would change the fingerprint and nothing else."""
    at = ("captions", "filters", "max_tokens_tokenizer")
    filters = data["captions"].get("filters") or {}
    if filters.get("max_tokens") is None and at in c.doc.key_positions:
        c.bad(at, "applies with captions.filters.max_tokens only; set max_tokens too, or remove it", key=True)


def hub_file(url: str, repo_type: str | None = None):
    """hub.py's HubFile of an hf:// URL naming a file (in a repository of `repo_type`), else None."""
    try:
        found = parse_hf_url(url)
    except ValueError:
        return None
    return found if found.path and repo_type in (None, found.repo_type) else None


def check_model_file(c: Collector, value: str, at: tuple) -> None:
    if is_hf_url(value):
        if hub_file(value) is None:
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
            ipc = gen.get("images_per_caption", 1)
            most *= ipc["max"] if isinstance(ipc, dict) else ipc  # adaptive: at most `max` per caption
        if sel["size"] > most:
            c.bad(("select", "size"), f"{sel['size']} rows can never be selected: the sources' limits allow at"
                  f" most {most} candidates; lower size or set allow_fewer: true")


def default_source_name(kind: str, path: str) -> str:
    stem = path.rstrip("/").split("/")[-1]
    if kind != "hf_dataset":
        stem = stem.split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) or kind
