"""clip: CLIPScore, the cosine of the image's and the caption's open_clip embeddings (the paper's
score.clip; column clip_score, in score.clip.units)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ...models.builtin import CLIP_MODELS
from ...models.uses import ModelUse
from ..parts import Column, ImageScore


@dataclass(frozen=True)
class ClipConfig:
    model: str
    pretrained: Optional[str] = None
    prefix: str = "A photo depicts "
    units: str = "cosine"        # cosine | clipscore (2.5 * max(cos, 0))


class ClipScore(ImageScore):
    name = "clip"
    summary = "CLIPScore with open_clip"
    order = 10
    required = True
    legacy = "null"
    later = {"units": "cosine"}
    Config = ClipConfig
    schema = {'description': 'CLIPScore with open_clip, from the cosine similarity of image and text embeddings, '
                             'stored in the units below.',
              'type': 'object',
              'additionalProperties': False,
              'required': ['model'],
              'properties': {'model': {'description': 'open_clip model name (e.g. ViT-B-32, ViT-L-14; needs '
                                                      'pretrained), an open_clip model folder local-dir:PATH '
                                                      '(relative to the recipe file) or hf-hub:org/name (their own '
                                                      'weights), or builtin:shapes-clip (trained on the shapes '
                                                      'world) / builtin:tiny-clip (random weights).',
                                       'type': 'string',
                                       'minLength': 1},
                             'pretrained': {'description': 'open_clip pretrained tag (e.g. openai) or a local '
                                                           'checkpoint file (relative to the recipe file).',
                                            'type': 'string',
                                            'minLength': 1},
                             'prefix': {'description': 'Text prepended to each caption before encoding; the text '
                                                       "is truncated to the model's context length.",
                                        'type': 'string',
                                        'default': 'A photo depicts '},
                             'units': {'description': "Units of clip_score: cosine (the paper's: raw cosine, whose "
                                                      'reported means add up, 0.36 + 0.5 * 0.86 = 0.79) or '
                                                      "clipscore (Hessel et al.'s 2.5 * max(cosine, 0), as the "
                                                      "authors' follow-up code stores it).",
                                       'enum': ['cosine', 'clipscore'],
                                       'default': 'cosine'}}}
    thresholds = {"min_clip_score": {"description": "Drop candidates whose clip_score (in score.clip.units) is below"
                                                    " this.",
                                     "type": "number", "minimum": -1, "maximum": 2.5}}

    @classmethod
    def columns(cls, cfg: ClipConfig) -> list[Column]:
        doc = {"cosine": "the raw cosine of the open_clip image and text embeddings (score.clip.units: cosine)",
               "clipscore": "CLIPScore, 2.5 * max(cosine, 0) of the open_clip image and text embeddings"
                            " (score.clip.units: clipscore)"}[cfg.units]
        return [Column("clip_score", "float32", doc, score=True, selection=True)]

    @classmethod
    def models(cls, value: dict, at: tuple) -> list[ModelUse]:
        return [ModelUse(value, at, "clip", digest="score.clip", lock=("clip",), builtins=CLIP_MODELS,
                         what="the scoring CLIP", caption_prefix=value.get("prefix", ClipConfig.prefix))]

    @classmethod
    def check(cls, c, value, at, data) -> None:
        from ...recipe.checks import check_clip
        check_clip(c, value, at)

    @classmethod
    def load(cls, cfg: ClipConfig, context) -> "_ClipScore":
        return _ClipScore(context.main_clip, cfg.units)


class _ClipScore:
    def __init__(self, scorer, units: str):
        self.scorer, self.units = scorer, units

    def score(self, batch) -> dict:
        from ..score import clip_units
        cosine = self.scorer.score(batch.pixels, batch.captions, image_emb=batch.image_embeddings(self.scorer))
        return {"clip_score": clip_units(cosine, self.units)}
