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
from ..models.ref import lock_entry
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
            "models": {"generate": {**lock_entry(recipe.generate.model, recipe.generate.revision),
                                    "model": portable["generate"]["model"]},
                       "clip": portable["score"]["clip"],
                       **({"aesthetic": portable["score"]["aesthetic"]} if portable["score"].get("aesthetic") else {}),
                       **{name: portable["screen"][name] for name in ("nsfw", "watermark")
                          if (portable.get("screen") or {}).get(name)}},
            "scoring": {"image": "the published bytes, decoded with PIL as RGB",
                        "clip": "open_clip cosine of L2-normalised image and text embeddings"
                                + (", as 2.5 * max(cosine, 0)" if recipe.score.clip.units == "clipscore" else ""),
                        "ssim": ssim_implementation(ctx.work.marker(0).get("device_type") or "cpu")
                                if ctx.n_shards else None},
            "packages": package_versions(),
            "build": {"executor": ctx.executor, "device": ctx.device, **batch_sizes(ctx),
                      "shard_size": recipe.execution.shard_size, **generated_on(ctx)}}


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
