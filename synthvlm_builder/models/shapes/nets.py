"""Architectures of the tiny shapes models (configs only; training lives in train_*.py)."""
from __future__ import annotations

from .world import IMAGE_SIZE  # 32 px

LATENT_SIZE = IMAGE_SIZE // 2  # the VAE downsamples 2x: 16x16x4 latents
LATENT_CHANNELS = 4
TEXT_LEN = 24  # tokens, BOS/EOS included; the longest world caption has 20
TEXT_DIM = 64

# Zero terminal SNR + v-prediction: with SD's stock schedule the last training step still
# shows the image's layout, so sampling from pure noise never learned *where* objects go (a
# spike had position at chance). "trailing" spacing makes sampling start at that pure-noise step.
SCHEDULER_KW = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                    beta_schedule="scaled_linear", prediction_type="v_prediction",
                    rescale_betas_zero_snr=True, timestep_spacing="trailing", clip_sample=False,
                    steps_offset=1)  # unused by "trailing"; 1 silences a diffusers warning


def make_vae():
    from diffusers import AutoencoderKL

    # 625k params, one downsampling: at 32 px, 4x downsampling (8x8 latents) blurred crosses
    # into diamonds and triangles into blobs; 2x reconstructs the shapes exactly.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=16,
        mid_block_add_attention=False,
    )


def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        layers_per_block=1, block_out_channels=(32, 64),  # 1.0M params
        # Two levels (16, 8) with cross-attention at 8x8 and in the mid block (at 16x16 it
        # doubled the step time). The UNet has no positional encoding and learns "where" from
        # zero padding, which works at these sizes.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=16, norm_num_groups=16,
    )


def make_text_encoder(vocab_size: int, bos_id: int, eos_id: int, pad_id: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=2 * TEXT_DIM,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=TEXT_LEN,
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id, projection_dim=TEXT_DIM,
    )
    return CLIPTextModel(cfg)


def clip_model_cfg(vocab_size: int, eos_id: int, pad_id: int) -> dict:
    """open_clip model_cfg: a small ViT on 32 px (8x8 patches of 4 px) and a small text tower.

    hf_tokenizer_name is only a flag for open_clip's `local-dir:` loader, which then loads the
    HF tokenizer from the model folder itself; "eos" pooling because our EOS is not the
    highest token id (the stock "argmax" pooling assumes it is).
    """
    return {
        "embed_dim": 96,
        "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": 4, "width": 96, "layers": 3,
                       "head_width": 32, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": TEXT_LEN, "vocab_size": vocab_size, "width": 96,
                     "heads": 3, "layers": 2, "mlp_ratio": 2.0, "hf_tokenizer_name": "shapes-clip",
                     "pool_type": "eos", "eos_id": eos_id, "pad_id": pad_id},
    }
