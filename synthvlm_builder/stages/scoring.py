"""Every score of a batch of published images, in one place: CLIPScore and SSIM (the paper's score),
and the recipe's screens (aesthetic, NSFW, watermark, pHash, the embedding near-duplicates read).

Each CLIP model encodes each image once: the aesthetic head reads the CLIPScore model's image
embedding when it names the same CLIP, and the near-duplicate search stores that embedding too.
"""
from __future__ import annotations

import numpy as np
import torch

from .score import ClipScorer, clip_units, combined_score
from .screen import phashes
from .ssim import ssim_on


class BatchScorer:
    def __init__(self, recipe, device: torch.device, clip_bundle=None):
        """`clip_bundle`: an already-loaded CLIPScore model (benchmarks); by default the recipe's."""
        from ..models.loading import load_clip
        from ..models.screens import load_aesthetic_head, load_image_classifier

        self.recipe = recipe
        clip = recipe.score.clip
        if clip_bundle is None:
            clip_bundle = load_clip(clip.model, clip.pretrained, device)
        self.clip = ClipScorer(clip_bundle, prefix=clip.prefix, device=device)
        self.aesthetic = self.aesthetic_clip = None
        a = recipe.score.aesthetic
        if a is not None:
            self.aesthetic = load_aesthetic_head(a.model, a.file, a.revision, device)
            same = (a.clip.model, a.clip.pretrained) == (clip.model, clip.pretrained)
            self.aesthetic_clip = self.clip if same else ClipScorer(
                load_clip(a.clip.model, a.clip.pretrained, device), device=device)
        screen = recipe.screen
        self.classifiers = {name: load_image_classifier(s.model, s.revision, s.label, device)
                            for name in ("nsfw", "watermark") if (s := getattr(screen, name)) is not None}
        near = screen.near_duplicates
        self.phash = near is not None and near.phash_distance is not None
        self.embedding = near is not None and near.clip_cosine is not None

    def check_aesthetic_input(self, embed_dim: int) -> None:
        if self.aesthetic is not None and self.aesthetic.input_size != embed_dim:
            raise ValueError(f"the aesthetic head reads {self.aesthetic.input_size}-dimensional embeddings but"
                             f" score.aesthetic.clip gives {embed_dim}: use the CLIP the head was trained on")

    def score(self, pixels: torch.Tensor, captions: list[str], host: np.ndarray | None = None) -> dict:
        """Column name -> one value per image (rows.py names every column). `pixels`: the published
        images, uint8 N x H x W x 3 on any device (moved to the scoring device once); `host`: the same on
        the CPU, when at hand (the screens that read images on the CPU use it)."""
        recipe = self.recipe
        pixels = torch.as_tensor(pixels).to(self.clip.device)
        images = host if host is not None else pixels.cpu().numpy()
        emb = self.clip.image_embeddings(pixels)
        clip = clip_units(self.clip.score(pixels, captions, image_emb=emb), recipe.score.clip.units)
        ssim = ssim_on(pixels, images, recipe.score.ssim.size)
        out = {"clip_score": clip, "ssim": ssim, "score": combined_score(clip, ssim, recipe.score.ssim.weight)}
        if self.aesthetic is not None:
            a_emb = emb if self.aesthetic_clip is self.clip else self.aesthetic_clip.image_embeddings(pixels)
            self.check_aesthetic_input(a_emb.shape[1])
            out["aesthetic"] = self.aesthetic.score(a_emb)
        for name, classifier in self.classifiers.items():
            out[name] = classifier.score(images)
        if self.phash:
            out["phash"] = phashes(images)
        if self.embedding:
            out["clip_embedding"] = [e.tobytes() for e in emb.cpu().numpy().astype(np.float16)]
        return out
