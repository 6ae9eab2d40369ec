"""CLIPScore against open_clip's own pipeline, and the SSIM round trip against scikit-image."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import structural_similarity

from synthvlm_builder.models import loading as models
from synthvlm_builder.models.clip import ClipScorer
from synthvlm_builder.stages.score import combined_score, ssim_roundtrip

PREFIX = "A photo depicts "
CAPTIONS = ["a red cube on a table", "a dog in the snow", "two green apples"]


@pytest.fixture(scope="module")
def bundle():
    return models.load_clip("builtin:tiny-clip", None, device="cpu")


@pytest.fixture(scope="module")
def scorer(bundle):
    return ClipScorer(bundle, PREFIX, "cpu")


def _images(n, h, w, seed=0):
    """Smooth colour patterns plus noise: both the easy and the hard case for resampling."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for i in range(n):
        base = np.stack([127 + 100 * np.sin(xx / (5.0 + i) + yy / 9.0 + c) for c in range(3)], -1)
        out.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


def _open_clip_reference(bundle, images, captions):
    """The score computed the plain open_clip way: PIL transform, tokenizer, encode, cosine."""
    with torch.no_grad():
        pixels = torch.stack([bundle.transform(Image.fromarray(im)) for im in images])
        image_emb = F.normalize(bundle.model.encode_image(pixels), dim=-1)
        text_emb = F.normalize(bundle.model.encode_text(bundle.tokenizer(captions)), dim=-1)
    return (image_emb * text_emb).sum(-1).numpy()


@pytest.mark.parametrize("shape", [(256, 256), (200, 320), (320, 200), (64, 64), (224, 224)])
def test_batched_preprocess_reproduces_open_clip_transform(scorer, bundle, shape):
    images = _images(2, *shape)
    ours = scorer.preprocess(images)
    reference = torch.stack([bundle.transform(Image.fromarray(im)) for im in images])
    assert ours.shape == reference.shape == (2, 3, 224, 224)
    diff = (ours - reference).abs()
    # Within 2 uint8 levels of PIL (in normalised units: 2 / 255 / std ~ 0.03), almost always equal.
    assert diff.max() <= 0.031
    assert diff.mean() <= 5e-4


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_float_resize_path_used_on_gpus_matches_pil(mode):
    from synthvlm_builder.models.clip import _resize_like_pil

    images = _images(2, 200, 320)
    resample = Image.BICUBIC if mode == "bicubic" else Image.BILINEAR
    reference = np.stack([np.asarray(Image.fromarray(im).resize((150, 93), resample)) for im in images])
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    for uint8_kernels in (True, False):  # CPU kernels, and the float two-pass path GPUs take
        ours = _resize_like_pil(x, (93, 150), mode, uint8_kernels=uint8_kernels).permute(0, 2, 3, 1).numpy()
        assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 2


@pytest.mark.parametrize("resize_mode,interpolation", [("squash", "bicubic"), ("longest", "bilinear"),
                                                        ("shortest", "bilinear")])
def test_preprocess_follows_the_models_resize_mode(bundle, resize_mode, interpolation):
    """SigLIP-style squash, letterboxing `longest`, bilinear: as open_clip.image_transform does them."""
    import dataclasses

    import open_clip

    cfg = {**bundle.preprocess, "resize_mode": resize_mode, "interpolation": interpolation, "fill_color": 7}
    scorer = ClipScorer(dataclasses.replace(bundle, preprocess=cfg), PREFIX, "cpu")
    reference_transform = open_clip.image_transform(
        224, is_train=False, mean=cfg["mean"], std=cfg["std"], resize_mode=resize_mode,
        interpolation=interpolation, fill_color=7)
    images = _images(2, 200, 320)
    reference = torch.stack([reference_transform(Image.fromarray(im)) for im in images])
    assert (scorer.preprocess(images) - reference).abs().max() <= 0.031


def test_score_is_raw_cosine_like_open_clip(scorer, bundle):
    images = _images(3, 256, 256)
    scores = scorer.score(images, CAPTIONS)
    assert scores.dtype == np.float32 and scores.shape == (3,)
    assert np.all(np.abs(scores) <= 1.0)
    reference = _open_clip_reference(bundle, images, [PREFIX + c for c in CAPTIONS])
    np.testing.assert_allclose(scores, reference, atol=2e-3)
    # The prefix is part of the text the model sees.
    assert not np.allclose(ClipScorer(bundle, "", "cpu").score(images, CAPTIONS), scores, atol=1e-6)


def test_batch_equals_per_pair(scorer):
    images = _images(4, 128, 192, seed=1)
    captions = CAPTIONS + ["a lighthouse"]
    batch = scorer.score(images, captions)
    single = np.array([scorer.score(images[i : i + 1], captions[i : i + 1])[0] for i in range(4)])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_long_captions_are_truncated_to_the_context_length(scorer, bundle):
    long = " ".join(["a very detailed description of a sunny beach with palm trees"] * 20)
    tokens = bundle.tokenizer([PREFIX + long])
    assert tokens.shape == (1, 77) and tokens[0, -1].item() == 49407  # open_clip ends at EOT
    images = np.repeat(_images(1, 96, 96), 2, axis=0)
    a, b = scorer.score(images, [long, long + " and a completely different ending about volcanoes"])
    assert a == pytest.approx(b, abs=1e-6)  # the difference lies past token 77


def test_score_rejects_mismatched_lengths(scorer):
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        scorer.score(_images(2, 64, 64), ["one"])
    assert scorer.score(np.zeros((0, 64, 64, 3), np.uint8), []).shape == (0,)


def test_ssim_roundtrip_identity_noise_and_skimage():
    flat = np.full((2, 256, 256, 3), 90, np.uint8)
    assert np.allclose(ssim_roundtrip(flat, 128), 1.0)
    already_small = _images(1, 128, 160)  # short side == size: the round trip is the identity
    assert ssim_roundtrip(already_small, 128)[0] == pytest.approx(1.0)

    gradient = np.broadcast_to(np.linspace(0, 255, 256)[None, None, :, None], (1, 256, 256, 3))
    smooth = gradient.round().astype(np.uint8)
    noisy = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    s_smooth, s_noisy = ssim_roundtrip(smooth, 64)[0], ssim_roundtrip(noisy, 64)[0]
    assert s_smooth > 0.95 and s_noisy < 0.5

    # A direct scikit-image call on the same PIL round trip, for a non-square image.
    image = _images(1, 200, 300, seed=3)
    gray = Image.fromarray(image[0]).convert("L")
    back = gray.resize((126, 84), Image.BICUBIC).resize((300, 200), Image.BICUBIC)
    expected = structural_similarity(np.asarray(gray), np.asarray(back), data_range=255)
    got = ssim_roundtrip(image, 84)
    assert got.dtype == np.float32 and got[0] == pytest.approx(expected, abs=1e-6)
    bilinear = ssim_roundtrip(image, 84, resample="bilinear")[0]
    assert bilinear != pytest.approx(expected, abs=1e-6)


def test_combined_score():
    clip, ssim = np.array([0.30, 0.36], np.float32), np.array([0.8, 0.9], np.float32)
    combined = combined_score(clip, ssim, 0.5)
    assert combined.dtype == np.float32
    np.testing.assert_allclose(combined, [0.70, 0.81], atol=1e-6)
    np.testing.assert_allclose(combined_score(clip, ssim, 0.0), clip)
