"""recipe.lock.json: what a build was made from, so it can be rebuilt, verified and published
with its identity (the resolved recipe, the fingerprint, the curated captions' digest, the exact
model weights, the package versions and the settings that change low bits of pixels)."""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from .. import __version__
from ..errors import InputError
from ..execution.plan import portable_dict
from ..stages.ssim import implementation as ssim_implementation
from ..layout import LOCK

PACKAGES = ("torch", "diffusers", "transformers", "open_clip_torch", "datasets", "huggingface_hub",
            "pyarrow", "pillow", "scikit-image", "numpy", "kenlm", "sentencepiece", "jieba", "openai")


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["synthvlm-builder"] = __version__
    versions["python"] = platform.python_version()
    return versions


def build_lock(ctx) -> dict:
    """`ctx` is the runner's BuildContext."""
    recipe, meta = ctx.recipe, ctx.caption_meta
    portable = portable_dict(recipe)
    return {"fingerprint": ctx.fingerprint, "identity": ctx.identity, "inputs": ctx.inputs, "recipe": portable,
            "captions": {"count": meta["count"], "sha256": meta["sha256"]},
            "models": models_entry(ctx.inputs, portable),
            "scoring": {"image": "the published bytes, decoded with PIL as RGB",
                        "clip": "open_clip cosine of L2-normalised image and text embeddings"
                                + (", as 2.5 * max(cosine, 0)" if recipe.score.clip.units == "clipscore" else ""),
                        "ssim": ssim_implementation(ctx.work.marker(0).get("device_type") or "cpu")
                                if ctx.n_shards else None},
            "packages": package_versions(),
            "build": {"executor": ctx.executor, "device": ctx.device, **batch_sizes(ctx),
                      "shard_size": recipe.execution.shard_size, **generated_on(ctx)}}


def models_entry(inputs: dict, portable: dict) -> dict:
    """Each model as the recipe names it, with `weights`: the digest the build's content identity read
    for it (`inputs`, models/digests.py; the one `verify` compares): for a builtin or local folder the
    sha256 over every file's relative path and sha256 (a deleted or replaced unet/ changes it), for a
    local file its sha256, for a Hub model the commit its revision resolved to (a commit pins every file
    of the repository), for an open_clip release its tag."""
    score, screens = portable["score"], portable.get("screen") or {}
    out = {"generate": {"model": portable["generate"]["model"], "revision": portable["generate"].get("revision"),
                        "weights": inputs["generate.model"]},
           "clip": {**score["clip"], "weights": inputs["score.clip"]}}
    if score.get("aesthetic"):
        a = score["aesthetic"]
        out["aesthetic"] = {**a, "weights": inputs["score.aesthetic.model"],
                            "clip": {**a["clip"], "weights": inputs["score.aesthetic.clip"]}}
    for name in ("nsfw", "watermark"):
        if screens.get(name):
            out[name] = {**screens[name], "weights": inputs[f"screen.{name}"]}
    return out


def batch_sizes(ctx) -> dict:
    """The batch size the shards were generated with (their markers say; `auto` resolved), and each
    shard's when they differ (an out-of-memory back-off halved it mid-build)."""
    sizes = [ctx.work.marker(i).get("batch_size") or ctx.recipe.generate.batch_size for i in range(ctx.n_shards)]
    out = {"batch_size": sizes[0] if sizes else ctx.recipe.generate.batch_size}
    if len(set(sizes)) > 1:
        out["shard_batch_sizes"] = sizes
    if ctx.recipe.generate.batch_size == "auto":
        out["batch_size_chosen_by"] = "auto"
    return out


def generated_on(ctx) -> dict:
    """The device types and CPU thread counts the shards were generated with (their markers say)."""
    markers = [ctx.work.marker(i) for i in range(ctx.n_shards)]
    return {"device_types": sorted({m.get("device_type") or "unknown" for m in markers}),
            "cpu_threads": sorted({m["cpu_threads"] for m in markers if m.get("cpu_threads")})}


def read_lock(build_dir: Path) -> dict:
    """A build's recipe.lock.json, or bad input naming the file."""
    path = Path(build_dir) / LOCK
    try:
        lock = json.loads(path.read_text())
        if isinstance(lock["fingerprint"], str) and lock["recipe"]["name"] and lock["recipe"]["version"]:
            return lock
    except (OSError, ValueError, KeyError, TypeError):
        pass
    raise InputError("DIR", f"{path} is not a synthvlm lock file (expected fingerprint, recipe.name and"
                     " recipe.version); rebuild the dir")
