"""shapes_world: renders the shapes world's scene a caption describes (models/shapes/world.py), no model
and no denoiser: a generator about a thousand times cheaper than a diffusion model, for rehearsals at
full scale on a CPU (benchmarks/scale.py) and as a test double for every stage after generation.

Like a real model it is imperfect, seeded and per-image deterministic: each image's seed
(derive_seed(seed, caption id, k)) draws the positions a caption leaves open and, with probability
ERROR_RATE, one attribute wrong (an object's colour or shape, or the background), plus faint pixel noise;
so candidates of a caption differ, and scores and best-of-k mean something. A caption outside the
world's grammar gets a seeded noise image. `generate.model` names the model it stands in for (e.g.
builtin:shapes-sd): its tokenizer counts captions.filters.max_tokens and its context is checked as for a
real build, but no weights are loaded or digested. Resolution is honoured; steps and guidance_scale are
not used.
"""
from __future__ import annotations

import numpy as np

from ..parts import GeneratorBackend

ERROR_RATE = 0.35
NOISE = 6  # the pixel noise's standard deviation, in levels


class ShapesWorldGenerator(GeneratorBackend):
    name = "shapes_world"
    summary = "renders the shapes world's scene of each caption (no model): a cheap stand-in for rehearsals"
    order = 50

    @classmethod
    def preflight(cls, g) -> None:
        """Nothing to load or fetch."""

    @classmethod
    def load(cls, g, device, pipe=None):
        return WorldRenderer(g.resolution, device)


class WorldRenderer:
    def __init__(self, resolution, device):
        self.width, self.height = resolution
        self.device = device

    def generate_tensor(self, prompts: list[str], seeds: list[int]):
        import torch
        images = np.stack([self.render(p, s) for p, s in zip(prompts, seeds)])
        return torch.from_numpy(images).to(self.device)

    def render(self, prompt: str, seed: int) -> np.ndarray:
        from PIL import Image

        from ...models.shapes import world
        rng = np.random.default_rng(seed)
        scene = world.parse_caption(prompt)
        if scene is None:
            return rng.integers(0, 256, (self.height, self.width, 3), dtype=np.uint8)
        image = world.render(_imperfect(scene, rng), max(self.width, self.height))
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, NOISE, (self.height, self.width, 1)).astype(np.int16)
        return np.clip(pixels, 0, 255).astype(np.uint8)


def _imperfect(scene, rng):
    """The scene with open positions drawn and, at ERROR_RATE, one attribute wrong (seeded by `rng`)."""
    from ...models.shapes import world
    taken = {o.position for o in scene.objects if o.position}
    objs = []
    for o in scene.objects:
        position = o.position
        if position is None:
            position = world.pick(rng, [p for p in world.POSITIONS if p not in taken])
            taken.add(position)
        objs.append(world.Obj(o.shape, o.color, position))
    background = scene.background
    if rng.random() < ERROR_RATE:
        what, i = int(rng.integers(3)), int(rng.integers(len(objs)))
        if what == 0:
            objs[i] = world.Obj(world.pick(rng, [s for s in world.SHAPES if s != objs[i].shape]), objs[i].color,
                                objs[i].position)
        elif what == 1:
            used = {o.color for o in objs}
            objs[i] = world.Obj(objs[i].shape, world.pick(rng, [c for c in world.COLORS if c not in used]),
                                objs[i].position)
        else:
            background = world.pick(rng, [b for b in world.BACKGROUNDS if b != background])
    return world.Scene(background, tuple(objs))
