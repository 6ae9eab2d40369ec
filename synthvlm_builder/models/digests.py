"""What names a model's exact content, for the build's content identity (execution/identity.py) and
the caption stage's caches (curation/cache.py): one definition, so the two cannot disagree.

Builtin and local models: the sha256 of their files; Hub models: the commit their revision resolves
to in the local cache; an open_clip release tag names fixed weights by itself.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..atomic import sha256_file
from ..hub import snapshot_commit
from .ref import BUILTIN, HUB, LOCAL, ModelRef, pretrained_is_file

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def tree_digest(folder: Path) -> str:
    """sha256 over the relative path and sha256 of every file below `folder`."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def path_digest(path: Path) -> str:
    return "sha256:" + (tree_digest(path) if Path(path).is_dir() else sha256_file(path))


def model_digest(model: str, revision: str | None, index_file: str = "model_index.json") -> str:
    """A pipeline (or, with index_file="config.json", a transformers model) named as ModelRef reads it."""
    ref = ModelRef.parse(model)
    if ref.kind == BUILTIN:
        from .builtin import builtin_dir
        return "sha256:" + tree_digest(builtin_dir(ref.name))
    if ref.kind == LOCAL:
        return path_digest(ref.path())
    return "commit:" + cached_commit(ref.name, index_file, revision)


def clip_digest(model: str, pretrained: str | None) -> str:
    ref = ModelRef.parse(model, clip=True)
    if ref.kind == BUILTIN:
        from .builtin import builtin_dir
        return "sha256:" + tree_digest(builtin_dir(ref.name))
    if ref.kind == LOCAL:
        return path_digest(ref.path())
    if ref.kind == HUB:
        return "commit:" + cached_commit(ref.name, "open_clip_config.json", None)
    if pretrained and pretrained_is_file(pretrained):
        return path_digest(Path(pretrained))
    return f"tag:{ref.name}/{pretrained}"  # an open_clip release tag names fixed weights


def cached_commit(repo_id: str, filename: str, revision: str | None) -> str:
    """The commit a Hub revision resolves to in the local cache (what loading will use); a pinned
    commit sha is itself; otherwise the revision as written (resolved at load time)."""
    if revision and COMMIT.match(revision):
        return revision
    from huggingface_hub import try_to_load_from_cache
    cached = try_to_load_from_cache(repo_id, filename, revision=revision)
    commit = snapshot_commit(cached) if isinstance(cached, str) else None
    return commit or f"{repo_id}@{revision or 'main'}"
