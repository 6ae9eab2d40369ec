"""Content identity: the recipe fingerprint covers what the recipe says; the data also depend on what
its input files contain. The identity joins the fingerprint with a digest of every input (caption
files, local model folders and checkpoints, the Hub revisions things resolve to), and decides "same
data" everywhere: resume, "nothing to do", the lock file and the publish integrity check.

Digests (models/digests.py, one definition shared with the caption stage's caches) read inputs
only; nothing here writes. A source pinned with `sha256` that does not match is
bad input (exit 2) at the pin.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import InputError
from ..models.digests import COMMIT, path_digest
from ..models.ref import ModelRef
from ..recipe import Recipe
from ..recipe.paths import file_type
from .plan import canonical_json


def source_input(index: int) -> str:
    """The key of caption source `index` in the input digests (and the lock's `inputs`)."""
    return f"captions.sources[{index}]"


def source_digest(recipe: Recipe, index: int) -> str:
    """A file source's "sha256:HEX" (the caption stage verifies the bytes it curates against it: read
    once, see curation/sourcefile.py), an hf_dataset's folder digest or Hub commit."""
    from ..curation.sourcefile import pin_mismatch
    from ..curation.reading import open_source, source_field

    src = recipe.captions.sources[index]
    if file_type(src.type):
        with open_source(src, index) as f:  # an hf:// file is fetched (or found in the cache) at its revision
            digest = f.digest()
        if src.sha256 and src.sha256 != digest:
            raise pin_mismatch(f.path, digest, src.sha256, source_field(index, "sha256"))
        return "sha256:" + digest
    ref = ModelRef.parse(src.path)
    if ref.is_local:
        return path_digest(Path(src.path))
    return "commit:" + _hub_commit(src.path, src.revision, "dataset", source_field(index, "path"))


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
    """Recipe field -> digest of what it points at: every caption source and its image folder, and
    every model a component names (recipe/components.py model_uses, digested as models/uses.py says)."""
    from ..curation.reading import check_images
    from ..errors import BuildError
    from ..models.preflight import ModelUnavailable
    from ..models.uses import digest
    from ..recipe import recipe_to_dict
    from ..recipe.components import model_uses
    digests = {source_input(i): source_digest(recipe, i) for i in range(len(recipe.captions.sources))}
    for i, src in enumerate(recipe.captions.sources):
        if src.images:
            check_images(src, i)
            digests[f"captions.sources[{i}].images"] = path_digest(Path(src.images))
    for use in model_uses(recipe_to_dict(recipe)):
        if use.digest is not None:
            try:
                digests[use.digest] = digest(use)
            except ModelUnavailable as e:
                raise BuildError(f"{use.field}: {e}") from None
    return digests


def content_identity(fingerprint: str, digests: dict[str, str]) -> str:
    view = {"fingerprint": fingerprint, "inputs": digests}
    return hashlib.sha256(canonical_json(view).encode("utf-8")).hexdigest()


def build_key(identity: str, shard_size: int) -> str:
    """The work folder of a build: its identity and its shard size (which fixes batch composition)."""
    return hashlib.sha256(f"{identity}\0{shard_size}".encode()).hexdigest()[:16]

