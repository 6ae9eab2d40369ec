"""Every score of a batch of published images, in one place: the scores and screens the recipe turns on
(stages/scores/, stages/screens/, in the registry's order), each seeing the columns of those before it
(the combined score reads clip_score).

Each CLIP model encodes each image once: components ask the batch for a CLIP's image embeddings
(`ScoredBatch.image_embeddings`), and a CLIP named twice (the aesthetic head's, when it is the CLIPScore
model) is loaded once (`ScoringContext.clip`).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..models.clip import ClipScorer


class ScoringContext:
    """What scores and screens are loaded with: the recipe, the device, and the CLIPs loaded so far."""

    def __init__(self, recipe, device: torch.device, clip_bundle=None):
        self.recipe, self.device = recipe, device
        self._clips: dict[tuple, ClipScorer] = {}
        clip = recipe.score.clip
        if clip_bundle is not None:  # an already-loaded CLIPScore model (benchmarks)
            self._clips[(clip.model, clip.pretrained)] = ClipScorer(clip_bundle, prefix=clip.prefix, device=device)

    def clip(self, model: str, pretrained, prefix: str = "") -> ClipScorer:
        """The CLIP named (model, pretrained), loaded once per build whoever asks for it first; its text
        prefix is the CLIPScore model's when it is that model."""
        key = (model, pretrained)
        if key not in self._clips:
            from ..models.loading import load_clip
            self._clips[key] = ClipScorer(load_clip(model, pretrained, self.device), prefix=prefix, device=self.device)
        return self._clips[key]

    @property
    def main_clip(self) -> ClipScorer:
        """The CLIPScore model (score.clip)."""
        clip = self.recipe.score.clip
        return self.clip(clip.model, clip.pretrained, clip.prefix)


class ScoredBatch:
    """One batch being scored: the published images on the scoring device (`pixels`) and on the CPU
    (`host`), their captions, and the columns computed so far (`out`)."""

    def __init__(self, context: ScoringContext, pixels: torch.Tensor, host: np.ndarray, captions: list[str]):
        self.context, self.pixels, self.host, self.captions = context, pixels, host, captions
        self.out: dict = {}
        self._embeddings: dict[int, torch.Tensor] = {}

    def image_embeddings(self, scorer: ClipScorer) -> torch.Tensor:
        """`scorer`'s normalised image embeddings of the batch, computed once."""
        if id(scorer) not in self._embeddings:
            self._embeddings[id(scorer)] = scorer.image_embeddings(self.pixels)
        return self._embeddings[id(scorer)]

    def clip_embeddings(self) -> torch.Tensor:
        """The CLIPScore model's image embeddings."""
        return self.image_embeddings(self.context.main_clip)


class BatchScorer:
    def __init__(self, recipe, device: torch.device, clip_bundle=None):
        """`clip_bundle`: an already-loaded CLIPScore model (benchmarks); by default the recipe's."""
        from ..recipe.components import enabled

        self.recipe = recipe
        self.context = ScoringContext(recipe, device, clip_bundle)
        self.clip = self.context.main_clip
        self.parts = [(f"{kind}.{cls.name}", cls.load(cfg, self.context))
                      for kind in ("score", "screen") for cls, cfg in enabled(recipe, kind)]
        self.seconds = {name: 0.0 for name, _ in self.parts}  # per score and screen: the cost ledger's

    def score(self, pixels: torch.Tensor, captions: list[str], host: np.ndarray | None = None) -> dict:
        """Column name -> one value per image (rows.py names every column). `pixels`: the published
        images, uint8 N x H x W x 3 on any device (moved to the scoring device once); `host`: the same on
        the CPU, when at hand (the screens that read images on the CPU use it)."""
        pixels = torch.as_tensor(pixels).to(self.clip.device)
        batch = ScoredBatch(self.context, pixels, host if host is not None else pixels.cpu().numpy(), captions)
        for name, part in self.parts:
            t0 = time.perf_counter()
            batch.out.update(part.score(batch))
            self.seconds[name] += time.perf_counter() - t0
        return batch.out
