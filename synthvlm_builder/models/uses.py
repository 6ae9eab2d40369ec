"""A model a component loads, as the recipe names it: one declaration (`Component.models`) from which
validate checks the reference, the recipe's relative paths are resolved, the preflight makes sure it can
be had, the content identity digests its weights, and the lock and the card name it.

Kinds of reference:
    pipeline   a diffusers pipeline folder (model_index.json): builtin:NAME, a local folder or a Hub id
    clip       an open_clip model: builtin:NAME, local-dir:PATH, hf-hub:ID, or an architecture + pretrained
    folder     a transformers model folder (config.json): a local folder or a Hub id
    head       one weights file: a local file, or `file` in a Hub repository
    file       one model file: a local path or hf://ORG/NAME[@REV]/FILE
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

KINDS = ("pipeline", "clip", "folder", "head", "file")


@dataclass(frozen=True, eq=False)
class ModelUse:
    holder: dict                  # the recipe mapping holding the reference (plain data)
    at: tuple                     # that mapping's path in the recipe, e.g. ("score", "aesthetic")
    kind: str                     # one of KINDS
    key: str = "model"            # the reference's key in `holder`
    digest: Optional[str] = None  # its name among the content identity's inputs (None: not digested)
    lock: Optional[tuple] = None  # its path among the lock's `models` (None: not named there)
    lock_fields: Optional[tuple] = None  # the holder's keys the lock repeats (None: all of them)
    builtins: tuple = ()          # the builtin names this reference may take
    what: str = ""                # how messages name it, e.g. "the aesthetic head"
    expected: str = ""            # what a local reference must be, for messages
    # A CLIP that reads each caption, after this text (the CLIPScore prefix; "" for none); None: it reads
    # no caption. max_tokens must fit its context (models/context.py).
    caption_prefix: Optional[str] = None

    @property
    def field(self) -> str:
        return ".".join(map(str, self.at + (self.key,)))

    @property
    def model(self) -> str:
        return self.holder[self.key]

    @property
    def revision(self) -> Optional[str]:
        return self.holder.get("revision")

    @property
    def pretrained(self) -> Optional[str]:
        return self.holder.get("pretrained")

    @property
    def filename(self) -> Optional[str]:
        return self.holder.get("file")

    def label(self) -> str:
        return f"{self.what or 'the model'} ({self.field})"


def check_available(use: ModelUse) -> None:
    """ModelUnavailable (BrokenModel for a broken local one) when the model cannot be had now."""
    from .preflight import (check_clip_available, check_file_model_available, check_folder_model_available,
                            check_pipeline_available)
    if use.kind == "pipeline":
        check_pipeline_available(use.model, use.revision)
    elif use.kind == "clip":
        check_clip_available(use.model, use.pretrained)
    elif use.kind == "folder":
        check_folder_model_available(use.model, use.revision, use.label())
    elif use.kind == "head":
        check_file_model_available(use.model, use.filename, use.revision, use.label())
    elif use.kind == "file":
        from .files import ModelFile
        ModelFile.parse(use.model).check()


def digest(use: ModelUse) -> str:
    """What names the model's exact content (models/digests.py): the content identity, the caches, the
    lock and the card all use this."""
    from .digests import clip_digest, model_digest
    if use.kind == "pipeline":
        return model_digest(use.model, use.revision)
    if use.kind == "clip":
        return clip_digest(use.model, use.pretrained)
    if use.kind == "folder":
        return model_digest(use.model, use.revision, "config.json")
    if use.kind == "head":
        return model_digest(use.model, use.revision, index_file=use.filename)
    from .files import ModelFile
    return ModelFile.parse(use.model).digest()


def lock_entries(uses: list[ModelUse], inputs: dict[str, str]) -> dict[str, Any]:
    """The lock's `models`: each named use as the recipe names it (portable paths: `holder` comes from the
    portable recipe) with `weights`, the digest the content identity read for it."""
    out: dict[str, Any] = {}
    for use in uses:
        if use.lock is None:
            continue
        entry = {k: v for k, v in use.holder.items() if use.lock_fields is None or k in use.lock_fields}
        if use.digest is not None:
            entry["weights"] = inputs[use.digest]
        parent = out
        for part in use.lock[:-1]:
            parent = parent[part]
        last = use.lock[-1]  # a use nested in another's entry (the aesthetic head's CLIP) keeps its place there
        parent[last] = {**parent[last], **entry} if isinstance(parent.get(last), dict) else entry
    return out
