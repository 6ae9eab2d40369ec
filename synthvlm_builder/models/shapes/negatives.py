"""Hard negatives: scenes one attribute away from a given scene (the errors a generator makes).

Used to train the CLIP model contrastively against near misses, and as retrieval candidates in
the benchmark. Pure Python (no torch).
"""
from __future__ import annotations

from dataclasses import replace

from . import world
from .world import Obj, Scene, pick

# Relative frequency of each kind of error. Binding errors (attributes swapped between the two
# objects) get the most weight: they are what best-of-k selection is there to catch.
_KINDS_TWO = {"swap_colors": 3, "swap_shapes": 2, "shape": 2, "color": 1, "position": 2,
              "swap_positions": 1, "background": 0.5, "drop": 1}
_KINDS_ONE = {"shape": 3, "color": 2, "position": 2, "background": 1, "add": 1}


def _weighted(rng, weights: dict[str, float]) -> str:
    total = sum(weights.values())
    r = rng.random() * total
    for k, w in weights.items():
        r -= w
        if r < 0:
            return k
    return k


def _mutate(scene: Scene, kind: str, rng) -> Scene:
    objs = list(scene.objects)
    i = int(rng.random() * len(objs))
    o = objs[i]
    used_c = {x.color for x in objs}
    used_p = {x.position for x in objs}
    if kind == "shape":
        objs[i] = replace(o, shape=pick(rng, [s for s in world.SHAPES if s != o.shape]))
    elif kind == "color":
        objs[i] = replace(o, color=pick(rng, [c for c in world.COLORS if c not in used_c]))
    elif kind == "position":
        objs[i] = replace(o, position=pick(rng, [p for p in world.POSITIONS if p not in used_p]))
    elif kind == "background":
        return replace(scene, background=pick(rng, [b for b in world.BACKGROUNDS if b != scene.background]))
    elif kind == "swap_colors":
        a, b = objs
        objs = [replace(a, color=b.color), replace(b, color=a.color)]
    elif kind == "swap_shapes":
        a, b = objs
        objs = [replace(a, shape=b.shape), replace(b, shape=a.shape)]
    elif kind == "swap_positions":
        a, b = objs
        objs = [replace(a, position=b.position), replace(b, position=a.position)]
    elif kind == "drop":
        objs.pop(i)
    elif kind == "add":
        objs.append(Obj(pick(rng, world.SHAPES), pick(rng, [c for c in world.COLORS if c not in used_c]),
                        pick(rng, [p for p in world.POSITIONS if p not in used_p])))
    return Scene(scene.background, tuple(objs))


def hard_negative(scene: Scene, rng, positions: bool = True) -> Scene:
    """A different scene that differs from `scene` in one attribute or one binding.

    positions=False: for captions that name no positions, so only errors such a caption can
    tell apart (a moved object would have the same caption).
    """
    kinds = _KINDS_TWO if len(scene.objects) == 2 else _KINDS_ONE
    if not positions:
        kinds = {k: w for k, w in kinds.items() if k not in ("position", "swap_positions")}
    while True:
        neg = _mutate(scene, _weighted(rng, kinds), rng)
        if neg != scene and (positions or _unplaced(neg) != _unplaced(scene)):
            return neg  # (swapping equal shapes changes nothing)


def _unplaced(scene: Scene) -> tuple:
    return scene.background, sorted((o.color, o.shape) for o in scene.objects)
