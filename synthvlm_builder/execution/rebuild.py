"""`rebuild`: a release made again from its own files, so that the card's rebuild instruction works
wherever the release is, without the caption sources the recipe was first run on.

    DIR (or a Hub release, downloaded without its data) -> recipe.lock.json (schema-checked)
    -> its recipe (the fingerprint recomputed and compared; recipe.yaml, verbatim, for the new card)
    -> the models the lock names (exit 2 unless these exact weights can be loaded, as verify does)
    -> captions.jsonl (its sha256 the lock's) -> the build, with those captions instead of the caption stage

The caption stage is not run: its sources, filters and models are the recipe's record of how the
captions were made, and the lock pins the result. So the rebuild has the release's fingerprint and
content identity, forms the same shards and batches from the same captions with the same seeds, and its
rows are the release's (bit for bit on the device type, thread count and library versions the lock
records, README "Reproducibility"). The batch size is the lock's, so an `auto` choice is not measured anew.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from .. import layout
from ..errors import InputError
from ..release.lock import read_lock
from ..release.verify import check_fingerprint, check_models, curated_captions, fetch_release, lock_recipe


def rebuild(target: str, revision: str | None = None, output_dir: Path | None = None, device: str | None = None,
            overwrite: bool = False):
    """Build the release in `target` (a build dir, a downloaded release, or a Hub dataset id at `revision`)
    again into `output_dir`; returns the runner's BuildResult."""
    from .context import Curated
    from .runner import build
    build_dir, label = fetch_release(target, revision, data=False)
    lock = read_lock(build_dir)
    lock_path = build_dir / layout.LOCK
    recipe = lock_recipe(lock, build_dir)
    check_fingerprint(recipe, lock, lock_path)
    recipe = check_models(recipe, lock, lock_path)
    if not lock.get("inputs"):
        raise InputError("inputs", "this lock records no input digests (a synthvlm-builder before content"
                         " identities made it): rebuild needs them", location=str(lock_path))
    for name in (layout.RECIPE, layout.STATS):
        if not (build_dir / name).is_file():
            raise InputError("DIR_OR_REPO", f"{label} has no {name}, which rebuild reads (the recipe as written"
                             " for the card, the caption funnel from stats.json)")
    try:  # the card and the recipe.yaml of the rebuild are the release's, byte for byte
        text = (build_dir / layout.RECIPE).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        raise InputError("DIR_OR_REPO", f"cannot read {build_dir / layout.RECIPE}: {e}") from None
    funnel = caption_funnel(build_dir / layout.STATS)
    built = lock["build"]
    generate = dataclasses.replace(recipe.generate, batch_size=built["batch_size"])  # `auto` as it was resolved
    recipe = dataclasses.replace(recipe, generate=generate, text=text)
    from ..destination import FOLDER, check_output
    from .preflight import check_cache
    out = Path(output_dir) if output_dir is not None else default_output(build_dir, label, recipe)
    field = "--output" if output_dir is not None else "output"
    check_output(out, field, FOLDER)
    _check_apart(out, build_dir, field)
    check_cache(recipe)
    if built.get("shard_batch_sizes"):
        from ..reporter import note
        note(f"{label} made some shards with a smaller batch after running out of memory"
             f" ({built['shard_batch_sizes']}); this rebuild uses batch {built['batch_size']} throughout, so those"
             " shards' pixels may differ in their low bits")
    curated = Curated(curated_captions(build_dir, lock), funnel, dict(lock["inputs"]), lock["captions"]["sha256"])
    return build(recipe, output_dir=out, device=device, overwrite=overwrite, curated=curated)


def caption_funnel(path: Path) -> dict:
    """The caption funnel a release's stats.json records (its card shows it again). Read as a release file,
    not as work state: a Hub snapshot links it into the cache."""
    try:
        funnel = json.loads(path.read_text(encoding="utf-8"))["captions"]
        if not (isinstance(funnel, dict) and isinstance(funnel.get("sources"), list)
                and isinstance(funnel.get("filters"), list)):
            raise ValueError("its `captions` is not a caption funnel")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError("DIR_OR_REPO", f"{path} is not a build's stats.json ({type(e).__name__}: {e}); the"
                         " release is damaged") from None
    return funnel


def default_output(build_dir: Path, label: str, recipe) -> Path:
    """Beside a local release, `<its folder>-rebuilt`; for a Hub release, the build's own default."""
    if label == str(build_dir):
        here = build_dir.resolve()
        return here.parent / f"{here.name}-rebuilt"
    return recipe.output_dir


def _check_apart(out: Path, build_dir: Path, field: str) -> None:
    """The rebuild never goes into the release it reads, nor inside it."""
    try:
        inside = Path(os.path.realpath(out)).is_relative_to(Path(os.path.realpath(build_dir)))
    except (OSError, ValueError) as e:
        raise InputError(field, f"{out}: {e}") from None
    if inside:
        raise InputError(field, f"{out} is the release being rebuilt, or inside it; give another folder")
