"""recipe.lock.json: what a build was made from, so it can be rebuilt, verified and published
with its identity (the resolved recipe, the fingerprint, the curated captions' digest, the exact
model weights, the package versions and the settings that change low bits of pixels)."""
from __future__ import annotations

import platform
from importlib import metadata

from .. import __version__
from ..execution.plan import portable_dict
from ..models.ref import lock_entry

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
                       "clip": portable["score"]["clip"]},
            "scoring": {"image": "the published bytes, decoded with PIL as RGB",
                        "clip": "open_clip cosine of L2-normalised image and text embeddings"
                                + (", as 2.5 * max(cosine, 0)" if recipe.score.clip.units == "clipscore" else ""),
                        "ssim": "skimage.metrics.structural_similarity (grayscale, data_range=255) of the image"
                                " and itself resized to score.ssim.size and back with PIL bicubic"},
            "packages": package_versions(),
            "build": {"executor": ctx.executor, "device": ctx.device, "batch_size": recipe.generate.batch_size,
                      "shard_size": recipe.execution.shard_size}}
