"""Row formatting: LLaVA-pretrain conversations and image encoding.

The instruction for each row is drawn from the prompt list by the row's seed, so
the same recipe always pairs the same instruction with the same image (the
paper's code drew it with an unseeded random.choice).
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

# Brief-description requests, in the spirit of LLaVA's pretraining instructions.
DEFAULT_PROMPTS = (
    "Describe the image briefly.",
    "Give a short description of this image.",
    "What does this picture show? Answer in one sentence.",
    "Summarize the visual content of the image.",
    "Write a concise caption for this image.",
    "Provide a brief description of the given image.",
    "Share a short, factual description of the photo.",
    "Describe what you see in a few words.",
    "Offer a succinct explanation of the picture.",
    "Render a clear and concise summary of the photo.",
    "Create a compact narrative representing the image.",
    "Relay a brief, clear account of the picture shown.",
)

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}

# Tokens a trainer reads as markup, by row style: a caption holding one would be misread (LLaVA
# counts image tokens per sample, so a caption's `<image>` shifts images between samples).
RESERVED_TOKENS = {"llava_pretrain": ("<image>", "<im_start>", "<im_end>", "<im_patch>")}


def instruction(seed: int, prompts: tuple[str, ...] | None = None) -> str:
    prompts = prompts or DEFAULT_PROMPTS
    return prompts[seed % len(prompts)]


def conversations(caption: str, seed: int, prompts: tuple[str, ...] | None = None) -> list[dict]:
    return [
        {"from": "human", "value": f"{instruction(seed, prompts)}\n<image>"},
        {"from": "gpt", "value": caption},
    ]


def encode_image(image: np.ndarray, image_format: str, quality: int = 95) -> bytes:
    """uint8 HxWx3 -> encoded bytes. Deterministic for a given Pillow build."""
    buf = io.BytesIO()
    pil = Image.fromarray(image, mode="RGB") if image.ndim == 3 else Image.fromarray(image)
    if image_format == "jpeg":
        pil.save(buf, format="JPEG", quality=quality)
    elif image_format == "webp":
        pil.save(buf, format="WEBP", quality=quality, method=4)
    elif image_format == "png":
        pil.save(buf, format="PNG")
    else:
        raise ValueError(f"unknown image format {image_format!r}")
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """Encoded bytes -> uint8 HxWx3, as a consumer's PIL decodes them."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def image_filename(sample_id: str, image_format: str) -> str:
    """A file name for a sample id, safe and distinct on every file system: a readable prefix of the
    id (unsafe characters replaced, at most 48 characters) plus 16 hex digits of the id's sha256, so
    ids that read alike ('a:b', 'a_b', 'a b') never share a file and a long id stays short."""
    readable = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in sample_id)[:48]
    digest = hashlib.sha256(sample_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable.strip('.-_') or 'image'}-{digest}.{EXTENSIONS[image_format]}"


def sample_key(sample_id: str) -> str:
    """A WebDataset key for a sample id: its image file name without the extension and with no dot
    left, because WebDataset readers split a member's name into key and extension at the first dot.
    The hash part of image_filename keeps distinct ids distinct."""
    return image_filename(sample_id, "png").rsplit(".", 1)[0].replace(".", "_")
