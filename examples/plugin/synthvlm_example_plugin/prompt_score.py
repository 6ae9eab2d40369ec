"""prompt_similarity: how much an image looks like a fixed text prompt (the cosine of its open_clip image
embedding and the prompt's text embedding), e.g. "a blurry photo" to screen blur with select's
max_prompt_similarity. The CLIP is loaded once per build even when it is also the CLIPScore model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from synthvlm_builder.plugins import BUILTIN_CLIP_MODELS, Column, ImageScore, ModelUse, check_clip

BOUND = {"type": "number", "minimum": -1, "maximum": 1}


@dataclass(frozen=True)
class PromptSimilarityConfig:
    model: str
    prompt: str
    pretrained: Optional[str] = None


class PromptSimilarityScore(ImageScore):
    name = "prompt_similarity"
    summary = "cosine of each image and a fixed text prompt under an open_clip model"
    order = 100
    Config = PromptSimilarityConfig
    schema = {"description": "Cosine of each image's and `prompt`'s open_clip embeddings (column prompt_similarity).",
              "type": "object", "additionalProperties": False, "required": ["model", "prompt"],
              "properties": {"model": {"description": "An open_clip model, as score.clip.model.", "type": "string",
                                       "minLength": 1},
                             "pretrained": {"description": "As score.clip.pretrained.", "type": "string",
                                            "minLength": 1},
                             "prompt": {"description": "The text every image is compared with.", "type": "string",
                                        "minLength": 1}}}
    thresholds = {"min_prompt_similarity": {**BOUND, "description": "Drop images less like the prompt than this."},
                  "max_prompt_similarity": {**BOUND, "description": "Drop images more like the prompt than this."}}

    @classmethod
    def columns(cls, cfg) -> list[Column]:
        return [Column("prompt_similarity", "float32", f"cosine of the image and the prompt {cfg.prompt!r}",
                       score=True, selection=True)]

    @classmethod
    def models(cls, value: dict, at: tuple) -> list[ModelUse]:
        return [ModelUse(value, at, "clip", digest="score.prompt_similarity", lock=("prompt_similarity",),
                         builtins=BUILTIN_CLIP_MODELS, what="the prompt-similarity CLIP")]

    @classmethod
    def check(cls, c, value, at, data) -> None:
        check_clip(c, value, at)

    @classmethod
    def load(cls, cfg, context):
        return _PromptSimilarity(context.clip(cfg.model, cfg.pretrained), cfg.prompt)


class _PromptSimilarity:
    def __init__(self, clip, prompt: str):
        self.clip, self.prompt = clip, prompt

    def score(self, batch) -> dict:
        emb = batch.image_embeddings(self.clip)
        return {"prompt_similarity": self.clip.similarity(emb, [self.prompt] * len(emb))}
