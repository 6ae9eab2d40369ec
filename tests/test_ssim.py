"""The batched torch SSIM (stages/ssim.py) equals the PIL + scikit-image reference within 1e-4; its
resize is PIL's bit for bit."""
import numpy as np
import pytest
import torch
from PIL import Image

from synthvlm_builder.stages import ssim as torch_ssim
from synthvlm_builder.stages.score import ssim_roundtrip as reference

rng = np.random.default_rng(0)


def images(n: int) -> dict:
    g = np.linspace(0, 255, n)
    smooth = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((n, n), Image.BICUBIC)
    return {"noise": rng.integers(0, 256, (n, n, 3), dtype=np.uint8),
            "flat": np.full((n, n, 3), 137, np.uint8),
            "gradient": np.stack([np.add.outer(g, g) / 2, np.add.outer(g, -g) / 2 + 127, np.tile(g, (n, 1))],
                                 -1).astype(np.uint8),
            "smooth": np.asarray(smooth)}


@pytest.mark.parametrize("n, size", [(64, 32), (128, 64), (256, 112), (512, 336), (1024, 336)])
def test_torch_ssim_matches_scikit_image(n, size):
    named = images(n)
    batch = np.stack(list(named.values()))
    expected = np.concatenate([reference(im[None], size) for im in batch])
    got = torch_ssim.ssim_roundtrip(torch.from_numpy(batch), size).numpy()
    for name, a, b in zip(named, expected, got):
        assert abs(a - b) <= 1e-4, (n, name, a, b)


def test_generated_images_and_non_square_sizes(quickstart):
    import io

    from buildutil import read_rows
    rows = read_rows(quickstart[0])[:6]
    batch = np.stack([np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB")) for r in rows])
    assert np.allclose(torch_ssim.ssim_roundtrip(torch.from_numpy(batch), 16).numpy(), [r["ssim"] for r in rows],
                       atol=1e-4)  # the stored SSIM of generated, published images
    wide = rng.integers(0, 256, (2, 96, 160, 3), dtype=np.uint8)
    assert np.allclose(torch_ssim.ssim_roundtrip(torch.from_numpy(wide), 48).numpy(),
                       np.concatenate([reference(im[None], 48) for im in wide]), atol=1e-4)


def test_luma_is_pils_bit_for_bit():
    im = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(torch_ssim.luma(torch.from_numpy(im))[0, 0].numpy(),
                          np.asarray(Image.fromarray(im[0]).convert("L")))


@pytest.mark.parametrize("shape, size", [((64, 64), (32, 32)), ((1024, 1024), (336, 336)),
                                         ((336, 336), (1024, 1024)), ((96, 160), (48, 80))])
def test_resize_is_pils_bit_for_bit(shape, size):
    im = rng.integers(0, 256, shape, dtype=np.uint8)
    expected = np.asarray(Image.fromarray(im).resize(size[::-1], Image.BICUBIC))
    assert np.array_equal(torch_ssim.pil_resize(torch.from_numpy(im)[None, None], size)[0, 0].numpy(), expected)
