"""Tiny pipelines of the modern text-to-image families, built from configs (diffusers' own test sizes or
smaller, tokenizers made in code: nothing is downloaded) and saved with save_pretrained, so a recipe
loads them through the same `from_pretrained` path as real weights."""
from pathlib import Path

import torch

WORDS = "a red cube dog in the snow two apples city at night on table".split()


def _t5():
    from transformers import T5Config, T5EncoderModel, T5Tokenizer
    tokenizer = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
                            + [("\u2581" + w, -1.0) for w in WORDS], extra_ids=0)
    encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=32, num_layers=1,
                                      num_heads=2))
    return encoder, tokenizer


def _clip(projection: bool, hidden: int = 16):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from synthvlm_builder.models.builtin import clip_tokenizer
    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, projection_dim=hidden, bos_token_id=49406, eos_token_id=49407)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config), clip_tokenizer()


def _vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL
    return AutoencoderKL(block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4,
                         down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                         latent_channels=latent_channels, **extra)


def flux(path: Path) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    torch.manual_seed(0)
    text_encoder, tokenizer = _clip(False, hidden=32)
    t5, t5_tokenizer = _t5()
    FluxPipeline(
        transformer=FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                           pooled_projection_dim=32, axes_dims_rope=[4, 4, 8]),
        vae=_vae(4, shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=t5, tokenizer_2=t5_tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    ).save_pretrained(path)
    return path


def sd35(path: Path) -> Path:
    """SD3.5-style: an MMDiT with QK RMS-norm and dual-attention (MMDiT-X) layers, CLIP x2 + T5."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    torch.manual_seed(0)
    clip_l, tok_l = _clip(True)
    clip_g, tok_g = _clip(True)
    t5, t5_tokenizer = _t5()
    StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                          attention_head_dim=8, num_attention_heads=2, caption_projection_dim=16,
                                          joint_attention_dim=32, pooled_projection_dim=32, qk_norm="rms_norm",
                                          dual_attention_layers=(0,)),
        vae=_vae(4, shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=clip_l, tokenizer=tok_l, text_encoder_2=clip_g, tokenizer_2=tok_g,
        text_encoder_3=t5, tokenizer_3=t5_tokenizer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    ).save_pretrained(path)
    return path


def pixart_sigma(path: Path) -> Path:
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel
    torch.manual_seed(0)
    t5, t5_tokenizer = _t5()
    PixArtSigmaPipeline(
        transformer=PixArtTransformer2DModel(sample_size=8, num_layers=1, patch_size=2, attention_head_dim=8,
                                             num_attention_heads=2, caption_channels=32, in_channels=4,
                                             cross_attention_dim=16, out_channels=8, attention_bias=True,
                                             activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                             norm_type="ada_norm_single", norm_elementwise_affine=False,
                                             norm_eps=1e-6),
        vae=_vae(4), text_encoder=t5, tokenizer=t5_tokenizer, scheduler=DPMSolverMultistepScheduler(),
    ).save_pretrained(path)
    return path


def sana(path: Path) -> Path:
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer
    torch.manual_seed(0)
    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;'-()!?\"/&%"))
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\u2581": 4}
    for ch in chars:  # character-level: any English caption (and SANA's instruction prompt) tokenizes
        vocab.setdefault(ch, len(vocab))
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[])
    encoder = Gemma2Model(Gemma2Config(head_dim=8, hidden_size=8, intermediate_size=16, num_attention_heads=2,
                                       num_hidden_layers=1, num_key_value_heads=2, vocab_size=len(vocab),
                                       max_position_embeddings=4096, attn_implementation="eager"))
    SanaPipeline(
        transformer=SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                           num_attention_heads=2, attention_head_dim=4, num_cross_attention_heads=2,
                                           cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
                                           sample_size=32),
        vae=AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                          encoder_block_types=("ResBlock", "EfficientViTBlock"),
                          decoder_block_types=("ResBlock", "EfficientViTBlock"),
                          encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                          encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
                          encoder_layers_per_block=(1, 1), decoder_layers_per_block=[1, 1],
                          downsample_block_type="conv", upsample_block_type="interpolate",
                          decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407),
        text_encoder=encoder, tokenizer=tokenizer, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    ).save_pretrained(path)
    return path


FAMILIES = {"flux": flux, "sd35": sd35, "pixart_sigma": pixart_sigma, "sana": sana}
