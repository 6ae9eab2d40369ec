"""aesthetic: the LAION aesthetic predictor, an MLP head on a CLIP image embedding (column aesthetic,
1-10; threshold select.min_aesthetic)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ...models.builtin import CLIP_MODELS
from ...models.uses import ModelUse
from ..parts import Column, ImageScore


@dataclass(frozen=True)
class ClipModelConfig:
    model: str
    pretrained: Optional[str] = None


@dataclass(frozen=True)
class AestheticConfig:
    model: str                   # the head: a local file or a Hub repo id holding `file`
    clip: ClipModelConfig
    file: str = "sac+logos+ava1-l14-linearMSE.pth"
    revision: Optional[str] = None


class AestheticScore(ImageScore):
    name = "aesthetic"
    summary = "the LAION aesthetic predictor"
    order = 30
    legacy = "null"
    Config = AestheticConfig
    schema = {"description": "The LAION aesthetic predictor: an MLP (768-1024-128-64-16-1, as LAION's"
                             " improved-aesthetic-predictor) on the L2-normalised CLIP image embedding; 1-10, higher"
                             " is nicer. Column `aesthetic`; threshold select.min_aesthetic.",
              "type": "object",
              "additionalProperties": False,
              "required": ["model", "clip"],
              "properties": {
                  "model": {"description": "The head's weights: a local .pth/.safetensors file (relative to the"
                                           " recipe file) or a Hub repo id holding `file` (e.g."
                                           " ttj/sac-logos-ava1-l14-linearMSE).",
                            "type": "string", "minLength": 1},
                  "file": {"description": "File name of the head in a Hub repo.",
                           "type": "string", "minLength": 1, "default": "sac+logos+ava1-l14-linearMSE.pth"},
                  "revision": {"description": "Hub revision of the head's repo.", "type": "string", "minLength": 1},
                  "clip": {"description": "The open_clip model whose L2-normalised image embedding the head reads"
                                          " (LAION's head: ViT-L-14 / openai). When it is the CLIPScore model, that"
                                          " model's embedding is reused: each CLIP encodes each image once.",
                           "type": "object",
                           "additionalProperties": False,
                           "required": ["model"],
                           "properties": {
                               "model": {"description": "As score.clip.model.", "type": "string", "minLength": 1},
                               "pretrained": {"description": "As score.clip.pretrained.", "type": "string",
                                              "minLength": 1}}}}}
    thresholds = {"min_aesthetic": {"description": "Drop candidates whose aesthetic score (score.aesthetic) is below"
                                                   " this.",
                                    "type": "number", "minimum": 0, "maximum": 10}}

    @classmethod
    def columns(cls, cfg: AestheticConfig) -> list[Column]:
        return [Column("aesthetic", "float32", "LAION aesthetic predictor score (1-10)", score=True, selection=True)]

    @classmethod
    def models(cls, value: dict, at: tuple) -> list[ModelUse]:
        return [ModelUse(value, at, "head", digest="score.aesthetic.model", lock=("aesthetic",),
                         what="the aesthetic head"),
                ModelUse(value["clip"], at + ("clip",), "clip", digest="score.aesthetic.clip",
                         lock=("aesthetic", "clip"), builtins=CLIP_MODELS, what="the aesthetic head's CLIP")]

    @classmethod
    def check(cls, c, value, at, data) -> None:
        from ...models.ref import BUILTIN, LOCAL, ModelRef
        from ...recipe.checks import check_clip
        ref = ModelRef.parse(value["model"], base=c.base)
        if ref.kind == LOCAL and not ref.path(c.base).is_file():
            c.bad(at + ("model",), f"aesthetic head file not found: {ref.path(c.base)} (a .pth or .safetensors"
                  " state dict, or a Hub repo id org/name)")
        elif ref.kind == BUILTIN:
            c.bad(at + ("model",), "no builtin aesthetic head; give a file or a Hub repo id")
        check_clip(c, value["clip"], at + ("clip",))

    @classmethod
    def preflight(cls, cfg: AestheticConfig) -> None:
        """The head's input size must be its CLIP's embedding size (read from both files' headers)."""
        from ...errors import InputError
        from ...models.context import clip_model_cfg
        from ...models.preflight import reported_at as at
        from ...models.screens import aesthetic_input_size
        with at("score.aesthetic.model"):
            size = aesthetic_input_size(cfg.model, cfg.file, cfg.revision, "the aesthetic head (score.aesthetic.model)")
        with at("score.aesthetic.clip.model"):
            dim = (clip_model_cfg(cfg.clip.model, fetch=True) or {}).get("embed_dim")
        if isinstance(dim, int) and dim != size:
            raise InputError("score.aesthetic.model", f"the head takes {size}-dimensional CLIP image embeddings, but"
                             f" {cfg.clip.model} (score.aesthetic.clip.model) makes {dim}-dimensional ones; pair the"
                             " head with the CLIP it was trained on (LAION's improved predictor: ViT-L-14, 768)")

    @classmethod
    def load(cls, cfg: AestheticConfig, context) -> "_Aesthetic":
        from ...models.screens import load_aesthetic_head
        head = load_aesthetic_head(cfg.model, cfg.file, cfg.revision, context.device)
        return _Aesthetic(head, context.clip(cfg.clip.model, cfg.clip.pretrained))


class _Aesthetic:
    def __init__(self, head, clip):
        self.head, self.clip = head, clip

    def score(self, batch) -> dict:
        emb = batch.image_embeddings(self.clip)
        if self.head.input_size != emb.shape[1]:
            raise ValueError(f"the aesthetic head reads {self.head.input_size}-dimensional embeddings but"
                             f" score.aesthetic.clip gives {emb.shape[1]}: use the CLIP the head was trained on")
        return {"aesthetic": self.head.score(emb)}
