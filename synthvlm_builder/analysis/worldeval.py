"""The shapes world's held-out evaluation set: scenes no built-in model trained on (world.is_held_out),
drawn from a fixed seed and rendered by the world's renderer (ground truth, never generated), with
captions from the world's grammar; and the pixel oracle's verdict on what a caption retrieves.
"""
from __future__ import annotations

import numpy as np

SEED = 20261207
ATTRIBUTES = ("background", "count", "color", "shape", "position", "all")


def held_out_set(n: int, seed: int = SEED) -> tuple[list[np.ndarray], list[str], list]:
    """(images HxWx3 uint8, captions, scenes) of `n` held-out scenes, as the world draws them (one or
    two objects; some captions name no positions)."""
    from ..models.shapes import world
    rng = np.random.default_rng(seed)
    scenes = [world.split_scene(rng, held_out=True) for _ in range(n)]
    placed = [bool(rng.random() >= world.P_NO_POSITION) for _ in scenes]
    captions = [world.caption(s, rng, p) for s, p in zip(scenes, placed)]
    return [np.asarray(world.render(s)) for s in scenes], captions, scenes


def describes(caption: str, scene) -> bool:
    """Whether `caption` is a true description of `scene`: the grammar's scene it names, positions left
    open where it names none (so one caption can describe several of the renders)."""
    from ..models.shapes import world
    asked = world.parse_caption(caption)
    if asked is None or asked.background != scene.background or len(asked.objects) != len(scene.objects):
        return False
    by_colour = {o.color: o for o in scene.objects}
    return all(o.color in by_colour and by_colour[o.color].shape == o.shape
               and o.position in (None, by_colour[o.color].position) for o in asked.objects)


def truth(captions: list[str], scenes: list) -> np.ndarray:
    """truth[i, j]: caption j describes render i (what a right retrieval is, both ways)."""
    return np.array([[describes(c, s) for c in captions] for s in scenes], dtype=bool)


_DETECTED: dict = {}  # image digest -> oracle.detect(image): the costly part, the same for every seed and run


def attribute_accuracy(images: list[np.ndarray], captions: list[str], retrieved: np.ndarray) -> dict:
    """For each caption, the oracle's check of the image it retrieved first: the share right per attribute."""
    import hashlib

    from ..models.shapes import oracle
    flags = {a: [] for a in ATTRIBUTES}
    for j, i in enumerate(retrieved):
        image = np.ascontiguousarray(images[int(i)])
        key = hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()
        if key not in _DETECTED:
            _DETECTED[key] = oracle.detect(image)
        verdict = oracle.check(image, captions[j], seen=_DETECTED[key])
        for a in ATTRIBUTES:
            flags[a].append(bool(verdict[a]))
    return {a: float(np.mean(v)) if v else 0.0 for a, v in flags.items()}
