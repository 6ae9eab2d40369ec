"""Built-in models: never downloaded, loaded through the same code paths as real weights.

Two kinds:
- Trained, shipped in the package: `builtin:shapes-sd` (a diffusers StableDiffusionPipeline, 32 px)
  and `builtin:shapes-clip` (an open_clip model folder, loaded as `local-dir:` recipes load one),
  trained on the procedural shapes world (models/shapes/; `python -m
  synthvlm_builder.models.shapes.train` remakes them). Their images match their captions; the
  quickstart runs on them.
- Random weights, real architectures: `builtin:tiny-sd`, `builtin:tiny-sdxl`, `builtin:tiny-clip` and
  `builtin:tiny-blip-itm`, built on first use from fixed configs under a fixed seed, saved in the
  layouts real weights use and loaded through the same path (`DiffusionPipeline.from_pretrained(dir)`,
  `open_clip.create_model_and_transforms(name, pretrained=file)`), for tests of other architectures.
  Sizes: an 8x-downsampling 4-level VAE (a 2-level one is ~30x slower at 256 px, because its attention
  runs at high resolution) and a 2-level UNet.
"""
from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import uuid
from pathlib import Path

from ..settings import cache_dir

PIPELINES = ("tiny-sd", "tiny-sdxl", "shapes-sd")
CLIP_MODELS = ("tiny-clip", "shapes-clip")
# Trained models shipped inside the package (committed safetensors), by name.
SHIPPED = {name: Path(__file__).parent / "shapes" / "weights" / name for name in ("shapes-sd", "shapes-clip")}
ITM_MODELS = ("tiny-blip-itm",)  # transformers BlipForImageTextRetrieval, for captions.filters.source_image.itm

# Bump when any config below changes, so a cache built from older configs is never reused.
VERSION = "v1"
# The random-weight builtins' text context (CLIP's 77 tokens, begin and end included) and the tokenizer
# components of their pipelines: what validate knows of them without building them.
TEXT_CONTEXT = 77
TOKENIZERS = {"tiny-sd": ("tokenizer",), "tiny-sdxl": ("tokenizer", "tokenizer_2")}
_SEED = 0
CLIP_MODEL_NAME = "synthvlm-tiny-clip"  # open_clip registry name (= stem of the config JSON)
CLIP_CONFIG_FILE = f"{CLIP_MODEL_NAME}.json"
CLIP_WEIGHTS_FILE = "open_clip_model.safetensors"  # open_clip's own name for safetensors weights

# Same geometry as ViT-B/32 (224 px, patch 32, OpenAI mean/std, bicubic, shortest-side resize +
# centre crop), so scoring runs the real preprocessing; only width/depth are tiny.
_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": TEXT_CONTEXT, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}


def clip_model_cfg(name: str) -> dict | None:
    """A builtin CLIP's open_clip model config (embed_dim, text_cfg...), without building it."""
    if name in SHIPPED and name in CLIP_MODELS:
        from .preflight import read_json
        cfg = read_json(builtin_dir(name) / "open_clip_config.json", f"builtin:{name}").get("model_cfg")
        return cfg if isinstance(cfg, dict) else None
    return json.loads(json.dumps(_CLIP_CONFIG)) if name in CLIP_MODELS else None  # a copy


def builtin_dir(name: str) -> Path:
    """Directory holding builtin model `name`: the package's own folder for a shipped model, else
    the cache, building it on first use.

    The model is built in a private temp dir and renamed into place, so a reader never sees a half
    written model, and two processes racing to build it both end up with one complete copy.
    """
    if name in SHIPPED:
        if not SHIPPED[name].is_dir():  # a broken install, not a user error
            raise FileNotFoundError(f"builtin model {name!r} is missing from the package: {SHIPPED[name]}")
        return SHIPPED[name]
    builders = {"tiny-sd": _build_tiny_sd, "tiny-sdxl": _build_tiny_sdxl, "tiny-clip": _build_tiny_clip,
                "tiny-blip-itm": _build_tiny_blip_itm}
    if name not in builders:
        raise ValueError(f"unknown builtin model {name!r}; known: {', '.join([*builders, *SHIPPED])}")
    final = cache_dir() / "builtin" / VERSION / _library_key(name) / name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    import torch

    try:
        # Seed a private copy of the RNG: building must not disturb the caller's random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            builders[name](tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _library_key(name: str) -> str:
    """The versions of the libraries whose seeded initialisation makes the weights.

    A library upgrade may change how a layer is initialised; keying the cache on the versions
    means one environment always gets the same weights, whatever an older one left in the cache.
    """
    from importlib.metadata import version

    libs = ("torch", "open_clip_torch") if name in CLIP_MODELS else ("torch", "diffusers", "transformers")
    return "-".join(f"{lib}{version(lib).split('+')[0]}" for lib in libs)


@functools.lru_cache(maxsize=None)
def _bpe_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's real 49,408-token BPE vocabulary, from the copy that ships inside open_clip.

    The vocab order (byte symbols, their `</w>` forms, merges, specials) reproduces OpenAI's ids,
    so token counts and ids equal those of the tokenizers that real SD checkpoints ship.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A transformers `CLIPTokenizer` with the real CLIP BPE, built in memory (no download)."""
    from transformers import CLIPTokenizer

    vocab, merges = _bpe_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=TEXT_CONTEXT,
                         pad_token=pad_token)


def _text_encoder(with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=TEXT_CONTEXT, projection_dim=16,
        hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _vae(scaling_factor: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        in_channels=3, out_channels=3, sample_size=256, scaling_factor=scaling_factor,
    )


def _unet(**extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, attention_head_dim=4,
        sample_size=32, in_channels=4, out_channels=4,  # sample_size 32 -> default 256 px
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **extra,
    )


def _build_tiny_sd(path: Path) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=_vae(0.18215), text_encoder=_text_encoder(), tokenizer=clip_tokenizer(),
        unet=_unet(cross_attention_dim=16),
        # Stable Diffusion 1.5's published scheduler config; from_config keeps `clip_sample`, which
        # PNDM ignores but a DDIM override inherits, as it does from the real config.
        scheduler=PNDMScheduler.from_config(dict(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
            set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, clip_sample=False,
        )),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(path)


def _build_tiny_sdxl(path: Path) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    # As in SDXL: the UNet attends to both encoders' hidden states concatenated (16 + 16) and is
    # conditioned on the second encoder's pooled projection plus 6 size/crop ids (6 * 8 + 16).
    unet = _unet(
        cross_attention_dim=32, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 16,
        transformer_layers_per_block=1,
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(0.13025), text_encoder=_text_encoder(), text_encoder_2=_text_encoder(with_projection=True),
        tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(pad_token="!"),  # SDXL's 2nd pads with "!"
        unet=unet,
        # SDXL base's published scheduler config.
        scheduler=EulerDiscreteScheduler.from_config(dict(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
            steps_offset=1, timestep_spacing="leading", interpolation_type="linear", clip_sample=False,
            sample_max_value=1.0, set_alpha_to_one=False, skip_prk_steps=True, use_karras_sigmas=False,
        )),
        add_watermarker=False,
    )
    pipe.save_pretrained(path)


def _build_tiny_clip(path: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    # open_clip.CLIP is the class create_model() instantiates for this config, so the saved state
    # dict loads strictly through create_model_and_transforms(name, pretrained=<file>).
    model = open_clip.CLIP(**_CLIP_CONFIG)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / CLIP_WEIGHTS_FILE))
    (path / CLIP_CONFIG_FILE).write_text(json.dumps(_CLIP_CONFIG, indent=2))


# A word-level BERT vocabulary (BLIP's text side is BERT) covering common caption words; the rest is [UNK].
_BLIP_WORDS = ("a an the of on in at with and two is are photo picture image red blue green yellow white black"
               " cat cats dog dogs bird car bicycle boat house tree street beach sky water table man woman child"
               " people sitting standing running sleeping parked flying near under over").split()


def _build_tiny_blip_itm(path: Path) -> None:
    """BLIP image-text matching at tiny width; weights drawn wider than BLIP's own init (0.5 instead of
    0.02), so that random weights still give matching scores that differ between pairs."""
    import transformers
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    transformers.utils.logging.disable_progress_bar()  # its "Writing model shards" bar is noise here
    path.mkdir(parents=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
    (path / "vocab.txt").write_text("\n".join(specials + list(_BLIP_WORDS)) + "\n")
    tokenizer = BertTokenizer(str(path / "vocab.txt"), bos_token="[DEC]", additional_special_tokens=["[ENC]"])
    wide = {"initializer_range": 0.5}
    config = BlipConfig(
        text_config=dict(vocab_size=len(specials) + len(_BLIP_WORDS), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=40,
                         encoder_hidden_size=16, bos_token_id=5, sep_token_id=3, pad_token_id=0, **wide),
        vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                           image_size=32, patch_size=8, **wide),
        projection_dim=16, image_text_hidden_size=16, **wide)
    BlipForImageTextRetrieval(config).eval().save_pretrained(path)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
                  ).save_pretrained(path)
