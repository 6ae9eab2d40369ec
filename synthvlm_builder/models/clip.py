"""Scoring (image, caption) pairs with an open_clip model (models/loading.py ClipBundle): open_clip's
inference preprocessing done as batched tensor ops on the device, the image and text towers, and the
cosine of their L2-normalised embeddings. CLIPScore (stages/scores/clip.py), the screens that read the
image embedding, and the caption stage's source-image agreement (curation/steps/source_image.py) all
score through this one class.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class ClipScorer:
    """Scores (image, caption) pairs with a `models.ClipBundle`, the caption prefixed by `prefix`."""

    def __init__(self, clip_bundle, prefix: str = "", device: str | torch.device | None = None):
        self.bundle = clip_bundle
        self.prefix = prefix
        self.device = torch.device(device) if device is not None else clip_bundle.device
        self.model = clip_bundle.model.to(self.device).eval()
        cfg = clip_bundle.preprocess
        size = cfg["size"]
        self._size = (size, size) if isinstance(size, int) else tuple(size)  # (h, w), as open_clip
        self._mode = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
        self._resize_mode = cfg.get("resize_mode") or "shortest"
        self._fill = float(cfg.get("fill_color", 0))
        self._mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1)
        # Antialiased bicubic is not implemented on MPS; resizing on the CPU there is cheap enough.
        self._prep_device = torch.device("cpu") if self.device.type == "mps" else self.device

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """open_clip's inference transform for this model, batched as tensor ops on the device.

        Mirrors open_clip.transform.image_transform(is_train=False): a torchvision Resize or
        ResizeKeepRatio, a centre crop (or pad), ToTensor and Normalize. Antialiased resizing
        matches PIL's filter (same support and coefficients).
        """
        pixels = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        x = pixels.to(self._prep_device).permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        th, tw = self._size
        mode = self._mode
        if self._resize_mode == "squash":
            new = (th, tw)
        elif self._resize_mode == "shortest" and th == tw:
            short, long = (h, w) if h <= w else (w, h)  # torchvision Resize(int): long side truncated
            new_long = int(th * long / short)
            new = (th, new_long) if h <= w else (new_long, th)
        else:  # ResizeKeepRatio: "shortest" with a non-square target always uses bicubic
            ratio = max(h / th, w / tw) if self._resize_mode == "longest" else min(h / th, w / tw)
            mode = mode if self._resize_mode == "longest" else "bicubic"
            new = (round(h / ratio), round(w / ratio))
        if new != (h, w):
            x = _resize_like_pil(x, new, mode)
        x = _center_crop_or_pad(x.float(), th, tw, self._fill)
        x = x.to(self.device) / 255.0
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def image_embeddings(self, images: np.ndarray) -> torch.Tensor:
        """L2-normalised float32 image embeddings (N, D), on the device."""
        return F.normalize(self.model.encode_image(self.preprocess(images)).float(), dim=-1)

    @torch.inference_mode()
    def text_embeddings(self, captions: list[str]) -> torch.Tensor:
        """L2-normalised float32 embeddings of the prefixed captions (N, D), on the device."""
        # open_clip's tokenizers truncate to the context length (77 for CLIP), ending with EOT.
        tokens = self.bundle.tokenizer([self.prefix + c for c in captions]).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    @torch.inference_mode()
    def score(self, images: np.ndarray, captions: list[str], image_emb: torch.Tensor | None = None) -> np.ndarray:
        """float32 cosine similarity of each image with its caption (`image_emb`: already computed)."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions")
        if len(captions) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.similarity(self.image_embeddings(images) if image_emb is None else image_emb, captions)

    @torch.inference_mode()
    def similarity(self, image_emb: torch.Tensor, captions: list[str]) -> np.ndarray:
        """float32 cosine of each (normalised) image embedding with its caption's."""
        if len(image_emb) != len(captions):
            raise ValueError(f"{len(image_emb)} image embeddings but {len(captions)} captions")
        return (image_emb * self.text_embeddings(captions)).sum(dim=-1).cpu().numpy().astype(np.float32)


def _resize_like_pil(x: torch.Tensor, size: tuple[int, int], mode: str,
                     uint8_kernels: bool | None = None) -> torch.Tensor:
    """Antialiased resize of uint8 NCHW images that reproduces PIL's within 1-2 levels.

    PIL resizes horizontally, then vertically, rounding to uint8 in between. On the CPU, torch's
    uint8 antialiased kernels do exactly that (and are SIMD-fast); elsewhere two float passes with
    rounding in between do the same (one 2-D float pass differs by up to 25 levels on noise).
    """
    if x.device.type == "cpu" if uint8_kernels is None else uint8_kernels:
        return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)
    x = x.float()
    for step in ((x.shape[-2], size[1]), size):  # width first, then height
        if tuple(x.shape[-2:]) != tuple(step):
            x = F.interpolate(x, size=step, mode=mode, align_corners=False, antialias=True).clamp_(0, 255).round_()
    return x


def _center_crop_or_pad(x: torch.Tensor, th: int, tw: int, fill: float) -> torch.Tensor:
    # open_clip's center_crop_or_pad / torchvision CenterCrop: pad (left/top gets the smaller
    # half) when too small, then crop at int(round((size - crop) / 2)).
    h, w = x.shape[-2:]
    if th > h or tw > w:
        pad_w, pad_h = max(tw - w, 0), max(th - h, 0)
        x = F.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2), value=fill)
        h, w = x.shape[-2:]
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return x[..., top : top + th, left : left + tw]
