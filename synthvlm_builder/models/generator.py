"""Batched text-to-image generation where each image depends only on its own prompt and seed.

Every image gets its own CPU `torch.Generator`: diffusers then draws each latent (and each
ancestral-sampler noise) from that image's generator alone, so an image does not depend on which
batch it landed in or on which device ran it, up to the last-bit rounding of batched matmuls
(measured: at most 1/255 per pixel; README "Reproducibility and resume"). This is the hot loop, so
everything that can be decided once is decided in __init__.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch

from .families import exact_options
from ..settings import setting


class ImageGenerator:
    """Wraps a loaded text-to-image pipeline (SD, SDXL, SD3-style) with fixed sampling settings."""

    def __init__(self, pipe, *, steps: int, guidance_scale: float, resolution: Sequence[int],
                 negative_prompt: str = ""):
        width, height = (int(v) for v in resolution)
        accepted = inspect.signature(pipe.__call__).parameters
        if negative_prompt and "negative_prompt" not in accepted:
            raise ValueError(f"{type(pipe).__name__} takes no negative_prompt; leave it empty for this model")
        self.pipe = pipe
        self.negative_prompt = negative_prompt
        self.width, self.height = width, height
        # An empty negative prompt is passed as None, i.e. "no negative prompt": SDXL then uses
        # zero embeddings for the unconditional branch (force_zeros_for_empty_prompt), as it was
        # trained, whereas an explicit "" would be encoded as text.
        self._call_kwargs = dict(num_inference_steps=int(steps), guidance_scale=float(guidance_scale),
                                 height=height, width=width, output_type="pt", **exact_options(type(pipe)))
        pipe.set_progress_bar_config(disable=True)

    def generate(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """uint8 images (N, H, W, 3) on the CPU, image i from prompts[i] and seeds[i], in one pipeline call."""
        return self.generate_tensor(prompts, seeds).cpu().numpy()

    @torch.inference_mode()
    def generate_tensor(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        """uint8 images (N, H, W, 3) left on the pipeline's device (scoring runs there too)."""
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        if not prompts:
            return torch.zeros((0, self.height, self.width, 3), dtype=torch.uint8)
        check_injected_oom(len(prompts))
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        kwargs = self._call_kwargs
        if self.negative_prompt:
            kwargs = {**kwargs, "negative_prompt": [self.negative_prompt] * len(prompts)}
        images = self.pipe(prompt=list(prompts), generator=generators, **kwargs).images  # N x 3 x H x W in [0, 1]
        # diffusers' own quantisation for output_type="np" + numpy_to_pil, bit for bit: float32 (the "np"
        # path casts with .float() before numpy), x 255, round half to even, uint8; but on the device.
        return images.float().mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


OOM_ENV = "SYNTHVLM_TEST_OOM_ABOVE"


def check_injected_oom(n: int) -> None:
    """Fault injection (README "Reliability"): with SYNTHVLM_TEST_OOM_ABOVE=N, a batch of more than N
    images raises torch.OutOfMemoryError, as a GPU that holds only N would."""
    limit = setting(OOM_ENV)
    if limit is not None and n > limit:
        raise torch.OutOfMemoryError(f"out of memory for a batch of {n} (injected: {OOM_ENV}={limit})")
