"""The shipped shapes models: loaded by the builder's own paths, small, and drawing what they are told.

The quality figures (selection lift, retrieval) are benchmarks/quality.py's; these tests are the floor
that any retrained model must clear, on a handful of held-out captions.
"""
import json

import numpy as np
import pytest

from synthvlm_builder.execution.plan import derive_seed
from synthvlm_builder.models import builtin
from synthvlm_builder.models.loading import load_clip, load_pipeline
from synthvlm_builder.models.shapes import world
from synthvlm_builder.models.tokenizer import caption_tokenizer
from synthvlm_builder.models.clip import ClipScorer
from synthvlm_builder.models.generator import ImageGenerator


@pytest.fixture(scope="module")
def models():
    pipe = load_pipeline("builtin:shapes-sd", dtype="float32", device="cpu")
    clip = ClipScorer(load_clip("builtin:shapes-clip", None, "cpu"))
    return pipe, clip


def _held_out(n, seed, two=False, placed=True):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = world.split_scene(rng, held_out=True, p_two=1.0 if two else 0.0)
        out.append(world.caption(s, rng, placed))
    return out


def test_shipped_in_the_package_in_the_layouts_real_weights_use():
    sd, clip = builtin.builtin_dir("shapes-sd"), builtin.builtin_dir("shapes-clip")
    assert sd == builtin.SHIPPED["shapes-sd"] and sd.is_relative_to(builtin.Path(builtin.__file__).parent)
    assert json.loads((sd / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert (clip / "open_clip_config.json").is_file() and (clip / "open_clip_model.safetensors").is_file()
    weights = [p for d in (sd, clip) for p in d.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth")]
    assert all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in weights) <= 10 * 2**20


def test_every_world_word_is_one_token_for_both_models(models):
    pipe, clip = models
    tok = caption_tokenizer("builtin:shapes-sd")
    for word in world.VOCAB:
        assert len(pipe.tokenizer(word, add_special_tokens=False).input_ids) == 1, word
        assert tok.count(word) == 3, word  # begin + word + end
    longest = max(_held_out(50, 0, two=True), key=len)
    assert tok.count(longest) <= pipe.tokenizer.model_max_length == clip.bundle.tokenizer.context_length


def test_images_match_their_captions(models):
    """Held-out captions (scenes never trained on), one candidate each, judged on the pixels."""
    pipe, clip = models
    gen = ImageGenerator(pipe, steps=15, guidance_scale=3.0, resolution=(32, 32))
    captions = _held_out(12, 1) + _held_out(4, 2, placed=False)
    images = gen.generate(captions, [derive_seed(0, f"t{i}", 0) for i in range(len(captions))])
    assert images.shape == (16, 32, 32, 3)
    right = [world.check(im, c)["all"] for im, c in zip(images, captions)]
    assert sum(right) >= 13, list(zip(captions, right))  # one-object scenes: ~100% in quality.py
    # the CLIP prefers each image's own caption to a caption one attribute away
    rng = np.random.default_rng(3)
    from synthvlm_builder.models.shapes.negatives import hard_negative
    scenes = [world.parse_caption(c) for c in captions[:12]]
    negatives = [world.caption(hard_negative(s, rng)) for s in scenes]
    own, other = clip.score(images[:12], captions[:12]), clip.score(images[:12], negatives)
    assert np.mean(own > other) >= 0.75, (own, other)
