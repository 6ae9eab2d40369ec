"""The shapes world: grammar round trip and the pixel oracle on clean and degraded renders."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from synthvlm_builder.models.shapes import world
from synthvlm_builder.models.shapes.negatives import hard_negative


def _scenes(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(s, world.caption(s, rng)) for s in (world.random_scene(rng) for _ in range(n))]


def test_caption_round_trip():
    unplaced = 0
    for scene, cap in _scenes(500):
        parsed = world.parse_caption(cap)
        if parsed.objects[0].position is None:  # the caption names no positions
            unplaced += 1
            assert all(o.position is None for o in parsed.objects), cap
            assert parsed == world.Scene(scene.background, tuple(
                world.Obj(o.shape, o.color, None) for o in scene.objects)), cap
        else:
            assert parsed == scene, cap
    assert 0.2 < unplaced / 500 < 0.4  # P_NO_POSITION = 0.3
    assert world.parse_caption("a red circle on the left and a blue square, white background") is None
    assert world.parse_caption(world.caption(_scenes(1)[0][0])) == _scenes(1)[0][0]  # canonical
    assert world.parse_caption("a photo of a dog") is None
    assert world.parse_caption("a red circle on the left, pink background") is None


def test_random_scene_invariants():
    rng = np.random.default_rng(1)
    scenes = [world.random_scene(rng) for _ in range(2000)]
    two = [s for s in scenes if len(s.objects) == 2]
    assert 0.33 < len(two) / len(scenes) < 0.47  # p_two = 0.4
    for s in two:
        a, b = s.objects
        assert a.color != b.color and a.position != b.position
    # the split is deterministic and holds out about a tenth of the scenes
    assert 0.05 < np.mean([world.is_held_out(s) for s in scenes]) < 0.15


def test_vocab_is_small_and_closed():
    words = set(world.VOCAB)
    for _, cap in _scenes(300):
        assert set(cap.replace(",", " , ").split()) <= words
    assert len(words) < 40


def _degrade(img: Image.Image, kind: str, rng) -> Image.Image:
    if kind == "blur":  # 1.2 px at 64 px
        return img.filter(ImageFilter.GaussianBlur(1.2 * img.size[0] / 64))
    if kind == "noise":
        a = np.asarray(img, np.float32) + rng.normal(0, 12, (*img.size[::-1], 3))
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if kind == "jpeg":
        buf = io.BytesIO()
        # 4:4:4 chroma: at 32 px, 4:2:0 leaves ~5 px of colour across an object and the shape
        # reads right only ~65% of the time (save 32 px images as PNG or 4:4:4 JPEG)
        img.save(buf, "JPEG", quality=75, subsampling=0)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "color":  # every channel off by up to 25 levels
        a = np.asarray(img, np.float32) + rng.uniform(-25, 25, 3)
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if kind == "resample":  # down to half size and back, bicubic
        w, h = img.size
        return img.resize((w // 2, h // 2), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    if kind == "all":
        for k in ("blur", "color", "noise", "jpeg"):
            img = _degrade(img, k, rng)
        return img
    raise ValueError(kind)


@pytest.mark.parametrize("kind", [None, "blur", "noise", "jpeg", "color", "resample", "all"])
def test_oracle_accepts_matching_images(kind):
    rng = np.random.default_rng(2)
    scenes = _scenes(120, seed=3)
    hits = 0
    for scene, cap in scenes:
        img = world.render(scene)
        if kind:
            img = _degrade(img, kind, rng)
        hits += world.check(np.asarray(img), cap)["all"]
    # blur + colour drift + noise + JPEG together is harsher than any generated image: ~93%
    # and a 16 px round trip leaves a triangle ~4 px across (~96%)
    need = {None: 1.0, "all": 0.9, "resample": 0.95}.get(kind, 0.97)
    assert hits / len(scenes) >= need, (kind, hits)


def test_oracle_rejects_hard_negatives():
    """An image of a near-miss scene must fail the caption, in the attribute that differs."""
    rng = np.random.default_rng(4)
    for scene, cap in _scenes(120, seed=5):
        neg = hard_negative(scene, rng, positions=world.parse_caption(cap).objects[0].position is not None)
        r = world.check(np.asarray(world.render(neg)), cap)
        assert not r["all"], (cap, world.caption(neg))


def test_oracle_other_sizes_and_shape_features():
    scene = world.Scene("white", (world.Obj("triangle", "red", "left"), world.Obj("square", "blue", "right")))
    cap = world.caption(scene)
    for size in (64, 128):
        assert world.check(np.asarray(world.render(scene, size)), cap)["all"]
    seen = world.detect(np.asarray(world.render(scene)))
    assert seen["background"] == "white"
    assert sorted((o["color"], o["shape"], o["position"]) for o in seen["objects"]) == [
        ("blue", "square", "right"), ("red", "triangle", "left")]
    for o in seen["objects"]:
        assert o["fit"] > 0.8
    bad = world.check(np.asarray(world.render(scene)),
                      "a red circle on the left and a blue square on the right, white background")
    assert bad["parsed"] and not bad["shape"] and bad["color"] and bad["position"] and not bad["all"]
    assert world.check(np.zeros((64, 64, 3), np.uint8), "nonsense")["parsed"] is False


def test_oracle_without_positions_checks_everything_else():
    scene = world.Scene("white", (world.Obj("circle", "red", "left"), world.Obj("square", "blue", "top")))
    img = np.asarray(world.render(scene))
    assert world.check(img, "a blue square and a red circle on a white background")["all"]
    swapped = world.check(img, "a blue circle and a red square on a white background")
    assert swapped["color"] and not swapped["shape"] and not swapped["all"]
    assert not world.check(img, "a blue square and a red circle on a black background")["all"]
    assert not world.check(img, "a blue square and a green circle on a white background")["all"]
    rng = np.random.default_rng(5)
    for _ in range(50):  # a negative for an unplaced caption never has the same caption
        neg = hard_negative(scene, rng, positions=False)
        assert world.caption(neg, positions=False) != world.caption(scene, positions=False)
