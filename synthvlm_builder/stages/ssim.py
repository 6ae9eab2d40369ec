"""The SynthVLM SSIM term, batched in torch on the images' device.

It computes exactly what stages/score.py `ssim_roundtrip` computes with PIL and scikit-image (the
reference the tests compare against, within 1e-4): PIL's integer luma (L = (19595 R + 38470 G + 7471 B
+ 2^15) >> 16), the short side resized to `size` and back with PIL's antialiased bicubic filter, and
scikit-image's `structural_similarity` defaults: a 7x7 uniform window, sample covariance (N / (N - 1)),
K1 = 0.01, K2 = 0.03, data_range = 255, and the mean over the window positions that fit inside the
image (skimage crops (7 - 1) / 2 pixels from each side, where its filter would read padding).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


WIN = 7
K1, K2, DATA_RANGE = 0.01, 0.03, 255.0
IMPLEMENTATION = ("torch, batched on the scoring device (stages/ssim.py): PIL's luma and bicubic resize bit for"
                  " bit, scikit-image structural_similarity defaults (7x7 uniform window, sample covariance,"
                  " data_range 255) in float64")
REFERENCE = ("PIL luma and bicubic resize, then skimage.metrics.structural_similarity (data_range 255) per image"
             " (stages/score.py ssim_roundtrip)")


def implementation(device_type: str) -> str:
    """Which SSIM a build on this device type computes (the lock records it)."""
    return REFERENCE if device_type == "cpu" else IMPLEMENTATION


def ssim_on(pixels: torch.Tensor, host, size: int):
    """SSIM where it is cheapest: batched on an accelerator; on a CPU, PIL + scikit-image per image
    (measured 2x faster there than this module's float64 batch). The two agree within 1e-4
    (tests/test_ssim.py); `implementation` names the one used."""
    if pixels.device.type == "cpu":
        from .score import ssim_roundtrip as reference
        import numpy as np
        return np.concatenate([reference(im[None], size) for im in host])
    return ssim_roundtrip(pixels, size).cpu().numpy()


def luma(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> uint8 N x 1 x H x W, PIL's convert("L") bit for bit."""
    x = images.to(torch.int32)
    y = (x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 32768) >> 16
    return y.to(torch.uint8).unsqueeze(1)


PRECISION_BITS = 22  # PIL's fixed point for 8-bit resampling (32 - 8 - 2)


def _bicubic(x: float) -> float:
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@lru_cache(maxsize=32)
def pil_weights(in_size: int, out_size: int) -> torch.Tensor:
    """PIL's bicubic resampling (ImagingResample) as an out x in matrix of its fixed-point integer
    coefficients (float64, exact): support scaled by the reduction, coefficients normalised per output
    pixel, then rounded half away from zero to PRECISION_BITS."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        k = [_bicubic((x + 0.5 - center) / filterscale) for x in range(xmin, xmax)]
        total = sum(k)
        for i, w in enumerate(k):
            w = w / total if total else w
            m[xx, xmin + i] = math.floor(w * (1 << PRECISION_BITS) + 0.5) if w >= 0 else \
                math.ceil(w * (1 << PRECISION_BITS) - 0.5)
    return m


def _pil_pass(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One resampling pass over the last axis, with PIL's rounding: clip((sum + 2^21) >> 22)."""
    acc = x.double() @ weights.to(x.device).T
    return torch.floor((acc + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp_(0, 255)


def pil_resize(gray: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PIL's bicubic resize of uint8 N x 1 x H x W, bit for bit, as matrix products (any device)."""
    h, w = gray.shape[-2:]
    x = _pil_pass(gray, pil_weights(w, size[1]))                                   # horizontal first
    x = _pil_pass(x.transpose(-1, -2), pil_weights(h, size[0])).transpose(-1, -2)  # then vertical
    return x.to(torch.uint8)


def roundtrip(gray: torch.Tensor, size: int) -> torch.Tensor:
    """The short side to `size` and back, as PIL's bicubic resize twice (uint8 N x 1 x H x W), bit for
    bit on every device (torch's own uint8 antialiased resize is 1-2 levels off PIL's, and GPUs lack it)."""
    h, w = gray.shape[-2:]
    scale = size / min(w, h)
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    return pil_resize(pil_resize(gray, small), (h, w))


def box_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of every WIN x WIN window that fits inside the image (N x 1 x H x W float64 ->
    N x 1 x (H - WIN + 1) x (W - WIN + 1)), from running sums: 4 operations a pixel, not 49."""
    c = F.pad(t, (1, 0, 1, 0)).cumsum(-2).cumsum(-1)
    return (c[..., WIN:, WIN:] - c[..., :-WIN, WIN:] - c[..., WIN:, :-WIN] + c[..., :-WIN, :-WIN]) / (WIN * WIN)


def structural_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image of two N x 1 x H x W tensors (float64)."""
    x, y = x.double(), y.double()
    mean = box_mean
    ux, uy = mean(x), mean(y)
    norm = WIN * WIN / (WIN * WIN - 1)  # sample covariance
    vx = norm * (mean(x * x) - ux * ux)
    vy = norm * (mean(y * y) - uy * uy)
    vxy = norm * (mean(x * y) - ux * uy)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


@torch.inference_mode()
def ssim_roundtrip(images: torch.Tensor, size: int) -> torch.Tensor:
    """float32 SSIM of each image (uint8 N x H x W x 3, any device) with itself resized to `size` and back."""
    gray = luma(images)
    return structural_similarity(gray, roundtrip(gray, size)).float()
