"""The SynthVLM score: CLIPScore + weight * SSIM(image, image resized down and back up).

CLIPScore is the cosine between L2-normalised open_clip image and text embeddings (models/clip.py
ClipScorer), stored in the recipe's score.clip.units (`clip_units`): by default the raw cosine (the
paper's units: ~0.36 mean for SynthVLM images with ViT-B/32), or the 2.5*max(cos, 0) of Hessel et al.
The SSIM term measures how much detail survives the VLM's low-resolution input.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def ssim_roundtrip(images: np.ndarray, size: int, resample: str = "bicubic") -> np.ndarray:
    """float32 SSIM of each image's grayscale with itself resized to `size` and back: the reference
    (PIL + scikit-image) that the batched torch version builds use (stages/ssim.py) must match.

    The short side goes to `size` (aspect kept; the paper's square 768 -> 336 -> 768 is the square
    case) with PIL resizes, and scikit-image's SSIM compares the two at the original size.
    Grayscale is taken first: it commutes with (linear) resizing up to rounding and makes the
    resizes 3x cheaper. The authors' follow-up code resized with `resample="bilinear"`.
    """
    from skimage.metrics import structural_similarity

    filt = _RESAMPLE[resample]
    out = np.empty(len(images), dtype=np.float32)
    for i, image in enumerate(images):
        gray = Image.fromarray(np.ascontiguousarray(image)).convert("L")
        w, h = gray.size
        scale = size / min(w, h)
        small = gray.resize((max(1, round(w * scale)), max(1, round(h * scale))), filt)
        back = small.resize((w, h), filt)
        # float32 inputs make skimage compute in float32: ~20% faster than from uint8 (float64),
        # equal to ~1e-8.
        out[i] = structural_similarity(np.asarray(gray, dtype=np.float32), np.asarray(back, dtype=np.float32),
                                       data_range=255)
    return out


def clip_units(cosine: np.ndarray, units: str) -> np.ndarray:
    """clip_score in the recipe's score.clip.units: the raw cosine (the paper), or Hessel et al.'s
    CLIPScore 2.5 * max(cosine, 0) (the authors' follow-up code)."""
    cosine = np.asarray(cosine, dtype=np.float32)
    if units == "cosine":
        return cosine
    if units == "clipscore":
        return np.float32(2.5) * np.maximum(cosine, np.float32(0))
    raise ValueError(f"unknown score.clip.units {units!r}: expected cosine or clipscore")


def combined_score(clip: np.ndarray, ssim: np.ndarray, weight: float) -> np.ndarray:
    """The paper's selection score: CLIPScore + weight * SSIM (weight 0.5 in the paper)."""
    return (np.asarray(clip, dtype=np.float32) + np.float32(weight) * np.asarray(ssim, dtype=np.float32))
