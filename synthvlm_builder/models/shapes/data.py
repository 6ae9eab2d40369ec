"""Batches of rendered training scenes (torch side of the world)."""
from __future__ import annotations

import numpy as np
import torch

from . import world


class Renderer:
    """Renders scenes once: the world is finite (~8k scenes), training revisits them."""

    def __init__(self, size: int = world.IMAGE_SIZE):
        self.size = size
        self._cache: dict[world.Scene, np.ndarray] = {}

    def __call__(self, scene: world.Scene) -> np.ndarray:
        img = self._cache.get(scene)
        if img is None:
            img = self._cache[scene] = np.asarray(world.render(scene, self.size))
        return img

    def batch(self, scenes) -> torch.Tensor:
        """float32 NCHW in [-1, 1]."""
        x = torch.from_numpy(np.stack([self(s) for s in scenes])).permute(0, 3, 1, 2)
        return x.float().div_(127.5).sub_(1.0)


def tokenize(tokenizer, captions: list[str], length: int) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=length, truncation=True,
                     return_tensors="pt").input_ids
