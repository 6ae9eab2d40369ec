"""Seed-exact batched generation on the builtin tiny pipelines (CPU, 4 steps, 64 px)."""
import numpy as np
import pytest
import torch

from synthvlm_builder.models import loading as models
from synthvlm_builder.models.generator import ImageGenerator

PROMPTS = ["a red cube on a table", "a dog in the snow", "two apples", "a city at night"]
SEEDS = [11, 22, 33, 44]


@pytest.fixture(scope="module")
def sd():
    return models.load_pipeline("builtin:tiny-sd")


@pytest.fixture(scope="module")
def gen(sd):
    return ImageGenerator(sd, steps=4, guidance_scale=7.5, resolution=(64, 64), negative_prompt="")


def test_output_is_uint8_nhwc_and_matches_diffusers_quantisation(sd, gen, capfd):
    capfd.readouterr()
    images = gen.generate(PROMPTS[:2], SEEDS[:2])
    assert capfd.readouterr().err == "", "the pipeline's own progress bar must be off"
    assert images.dtype == np.uint8 and images.shape == (2, 64, 64, 3)
    raw = sd(PROMPTS[:2], num_inference_steps=4, guidance_scale=7.5, height=64, width=64, output_type="np",
             generator=[torch.Generator("cpu").manual_seed(s) for s in SEEDS[:2]]).images
    as_pil = [np.asarray(im) for im in sd.numpy_to_pil(raw)]
    assert np.array_equal(images, np.stack(as_pil))


def test_same_seeds_give_identical_bytes(gen):
    assert gen.generate(PROMPTS, SEEDS).tobytes() == gen.generate(PROMPTS, SEEDS).tobytes()


def test_image_does_not_depend_on_its_batch(gen):
    batch = gen.generate(PROMPTS, SEEDS)
    for i in (0, 2):
        alone = gen.generate([PROMPTS[i]], [SEEDS[i]])[0]
        # Batched matmuls round differently in the last bit: at most 1/255 (README "Reproducibility").
        assert np.abs(alone.astype(int) - batch[i].astype(int)).max() <= 1
    # Reordering the batch reorders the images and changes nothing else (same batch size).
    swapped = gen.generate(PROMPTS[::-1], SEEDS[::-1])
    assert np.abs(swapped[::-1].astype(int) - batch.astype(int)).max() <= 1


def test_different_seeds_or_prompts_differ(gen):
    a, b, c = gen.generate([PROMPTS[0]] * 2 + [PROMPTS[1]], [1, 2, 1])
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_negative_prompt_and_resolution(sd, gen):
    plain = gen.generate(PROMPTS[:1], SEEDS[:1])
    neg = ImageGenerator(sd, steps=4, guidance_scale=7.5, resolution=(64, 64), negative_prompt="blurry")
    assert not np.array_equal(neg.generate(PROMPTS[:1], SEEDS[:1]), plain)
    wide = ImageGenerator(sd, steps=2, guidance_scale=5.0, resolution=(96, 64))  # (width, height)
    assert wide.generate(PROMPTS[:2], SEEDS[:2]).shape == (2, 64, 96, 3)


def test_tiny_sdxl_generates_seed_exactly():
    sdxl = models.load_pipeline("builtin:tiny-sdxl")
    gen = ImageGenerator(sdxl, steps=4, guidance_scale=5.0, resolution=(64, 64), negative_prompt="")
    batch = gen.generate(PROMPTS[:3], SEEDS[:3])
    assert batch.shape == (3, 64, 64, 3) and batch.dtype == np.uint8
    assert batch.std() > 0 and not np.array_equal(batch[0], batch[1])
    alone = gen.generate([PROMPTS[1]], [SEEDS[1]])[0]
    assert np.abs(alone.astype(int) - batch[1].astype(int)).max() <= 1


def test_bad_calls_raise(gen):
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        gen.generate(PROMPTS[:2], SEEDS[:1])
    assert gen.generate([], []).shape == (0, 64, 64, 3)


def test_sd3_style_pipeline_generates(tmp_path):
    """A tiny SD3 (MMDiT, flow matching, CLIP x2 + T5) saved and loaded like a real one."""
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel,
                           StableDiffusion3Pipeline)
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel, T5Tokenizer

    from synthvlm_builder.models.builtin import clip_tokenizer

    torch.manual_seed(0)
    words = "a red cube dog in the snow two apples city at night".split()
    t5_tokenizer = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
                               + [("\u2581" + w, -1.0) for w in words], extra_ids=0)
    clip = CLIPTextConfig(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, projection_dim=16, bos_token_id=49406, eos_token_id=49407)
    StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(  # joint dim 32 = T5 width = the two CLIPs' 16 + 16
            sample_size=32, patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
            num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=32, pooled_projection_dim=32),
        vae=AutoencoderKL(block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4,
                          down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                          latent_channels=4, shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=CLIPTextModelWithProjection(clip), tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(clip), tokenizer_2=clip_tokenizer(),
        text_encoder_3=T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), d_model=32, d_kv=8, d_ff=32,
                                               num_layers=1, num_heads=2)),
        tokenizer_3=t5_tokenizer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    ).save_pretrained(tmp_path / "sd3")

    pipe = models.load_pipeline(str(tmp_path / "sd3"))
    assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    with pytest.raises(ValueError, match="can be replaced by: flow_match_euler"):
        models.set_scheduler(pipe, "euler")
    gen = ImageGenerator(pipe, steps=4, guidance_scale=5.0, resolution=(64, 64), negative_prompt="blurry")
    batch = gen.generate(PROMPTS[:3], SEEDS[:3])
    assert batch.shape == (3, 64, 64, 3) and not np.array_equal(batch[0], batch[1])
    alone = gen.generate([PROMPTS[2]], [SEEDS[2]])[0]
    assert np.abs(alone.astype(int) - batch[2].astype(int)).max() <= 1
