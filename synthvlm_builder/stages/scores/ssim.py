"""ssim: resize robustness, the SSIM of an image and itself resized down to `size` and back up (the
paper's 336 px: how much detail survives the VLM's input), and the paper's combined score
clip_score + weight * ssim (columns ssim and score)."""
from __future__ import annotations

from dataclasses import dataclass

from ..parts import Column, ImageScore


@dataclass(frozen=True)
class SsimConfig:
    size: int = 336
    weight: float = 0.5


class SsimScore(ImageScore):
    name = "ssim"
    summary = "SSIM against the image resized down and back up"
    order = 20
    legacy = "null"
    Config = SsimConfig
    schema = {"description": "Resize robustness: grayscale SSIM between the image and itself resized down to size"
                             " and back up.",
              "type": "object",
              "additionalProperties": False,
              "properties": {
                  "size": {"description": "Short side, in pixels, of the down-sized copy (336 is the VLM's input"
                                          " size).",
                           "type": "integer", "minimum": 8, "maximum": 4096, "default": 336},
                  "weight": {"description": "Weight of SSIM in the combined score.",
                             "type": "number", "minimum": 0, "maximum": 10, "default": 0.5}},
              "default": {}}
    thresholds = {"min_ssim": {"description": "Drop candidates whose SSIM is below this.",
                               "type": "number", "minimum": -1, "maximum": 1},
                  "min_score": {"description": "Drop candidates whose combined score is below this.",
                                "type": "number", "minimum": -11, "maximum": 11}}

    @classmethod
    def columns(cls, cfg: SsimConfig) -> list[Column]:
        return [Column("ssim", "float32", f"SSIM of the image with itself resized down to {cfg.size} px and back up",
                       score=True, selection=True),
                Column("score", "float32", f"the selection score: clip_score + {cfg.weight:g} * ssim", score=True,
                       selection=True)]

    @classmethod
    def load(cls, cfg: SsimConfig, context) -> "_Ssim":
        return _Ssim(cfg)


class _Ssim:
    def __init__(self, cfg: SsimConfig):
        self.cfg = cfg

    def score(self, batch) -> dict:
        from ..score import combined_score
        from ..ssim import ssim_on
        ssim = ssim_on(batch.pixels, batch.host, self.cfg.size)
        return {"ssim": ssim, "score": combined_score(batch.out["clip_score"], ssim, self.cfg.weight)}
