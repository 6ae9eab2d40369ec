"""Content identity: the recipe fingerprint covers what the recipe says; the data also depend on what
its input files contain. The identity joins the fingerprint with a digest of every input (caption
files, local model folders and checkpoints, the Hub revisions things resolve to), and decides "same
data" everywhere: resume, "nothing to do", the lock file and the publish integrity check.

Digests read inputs only; nothing here writes. A source pinned with `sha256` that does not match is
bad input (exit 2) at the pin.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..atomic import sha256_file
from ..errors import InputError
from ..models.ref import BUILTIN, HUB, LOCAL, ModelRef, pretrained_is_file
from ..recipe import Recipe
from ..recipe.paths import FILE_TYPES
from .plan import canonical_json

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def tree_digest(folder: Path) -> str:
    """sha256 over the relative path and sha256 of every file below `folder`."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def _path_digest(path: Path) -> str:
    return "sha256:" + (tree_digest(path) if path.is_dir() else sha256_file(path))


def source_digest(recipe: Recipe, index: int) -> str:
    from ..curation.sources import local_file, source_field

    src = recipe.captions.sources[index]
    if src.type in FILE_TYPES:
        path = local_file(src, index)  # an hf:// file is fetched (or found in the cache) at its revision
        digest = sha256_file(path)
        if src.sha256 and src.sha256 != digest:
            raise InputError(source_field(index, "sha256"), f"{path} has sha256 {digest}, the recipe pins"
                             f" {src.sha256}: the file changed; restore it or update the pin (and the version)")
        return "sha256:" + digest
    ref = ModelRef.parse(src.path)
    if ref.is_local:
        return _path_digest(Path(src.path))
    return "commit:" + _hub_commit(src.path, src.revision, "dataset", source_field(index, "path"))


def model_digest(model: str, revision: str | None) -> str:
    ref = ModelRef.parse(model)
    if ref.kind == BUILTIN:
        from ..models.builtin import builtin_dir
        return "sha256:" + tree_digest(builtin_dir(ref.name))
    if ref.kind == LOCAL:
        return _path_digest(ref.path())
    return "commit:" + _cached_commit(ref.name, "model_index.json", revision)


def clip_digest(model: str, pretrained: str | None) -> str:
    ref = ModelRef.parse(model, clip=True)
    if ref.kind == BUILTIN:
        from ..models.builtin import builtin_dir
        return "sha256:" + tree_digest(builtin_dir(ref.name))
    if ref.kind == LOCAL:
        return _path_digest(ref.path())
    if ref.kind == HUB:
        return "commit:" + _cached_commit(ref.name, "open_clip_config.json", None)
    if pretrained and pretrained_is_file(pretrained):
        return _path_digest(Path(pretrained))
    return f"tag:{ref.name}/{pretrained}"  # an open_clip release tag names fixed weights


def _cached_commit(repo_id: str, filename: str, revision: str | None) -> str:
    """The commit a Hub revision resolves to in the local cache (what loading will use); a pinned
    commit sha is itself; otherwise the revision as written (resolved at load time)."""
    if revision and COMMIT.match(revision):
        return revision
    from huggingface_hub import try_to_load_from_cache
    cached = try_to_load_from_cache(repo_id, filename, revision=revision)
    if isinstance(cached, str) and "/snapshots/" in cached:
        return cached.split("/snapshots/")[1].split("/")[0]
    return f"{repo_id}@{revision or 'main'}"


def _hub_commit(repo_id: str, revision: str | None, repo_type: str, field: str) -> str:
    if revision and COMMIT.match(revision):
        return revision
    from huggingface_hub import HfApi
    try:
        info = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision)
    except Exception as e:  # offline, unknown repo or revision: what reading the source would hit too
        raise InputError(field, f"cannot resolve {repo_type} {repo_id}@{revision or 'main'} on the Hub:"
                         f" {type(e).__name__}: {e}") from None
    return info.sha


def input_digests(recipe: Recipe) -> dict[str, str]:
    """Recipe field -> digest of what it points at."""
    digests = {f"captions.sources[{i}]": source_digest(recipe, i) for i in range(len(recipe.captions.sources))}
    digests["generate.model"] = model_digest(recipe.generate.model, recipe.generate.revision)
    digests["score.clip"] = clip_digest(recipe.score.clip.model, recipe.score.clip.pretrained)
    a = recipe.score.aesthetic
    if a is not None:
        ref = ModelRef.parse(a.model)
        digests["score.aesthetic.model"] = (_path_digest(ref.path()) if ref.is_local else
                                            "commit:" + _cached_commit(ref.name, a.file, a.revision))
        digests["score.aesthetic.clip"] = clip_digest(a.clip.model, a.clip.pretrained)
    for name in ("nsfw", "watermark"):
        s = getattr(recipe.screen, name)
        if s is not None:
            ref = ModelRef.parse(s.model)
            digests[f"screen.{name}"] = (_path_digest(ref.path()) if ref.is_local else
                                         "commit:" + _cached_commit(ref.name, "config.json", s.revision))
    return digests


def content_identity(fingerprint: str, digests: dict[str, str]) -> str:
    view = {"fingerprint": fingerprint, "inputs": digests}
    return hashlib.sha256(canonical_json(view).encode("utf-8")).hexdigest()


def build_key(identity: str, shard_size: int) -> str:
    """The work folder of a build: its identity and its shard size (which fixes batch composition)."""
    return hashlib.sha256(f"{identity}\0{shard_size}".encode()).hexdigest()[:16]

