"""Agreement of each caption with its original image, as the paper's Data-Juicer operators measure it:

    source_image_missing   the row names no image, or its file is missing or unreadable
    source_image_clip      cosine of caption and image under open_clip (image_text_similarity_filter:
                           logits_per_text / 100 of CLIP, i.e. the cosine; no prompt prefix)
    source_image_itm       BLIP image-text matching, softmax(itm logits)[:, 1] (image_text_matching_filter)

CLIP runs through the build's own scorer (models/clip.py: open_clip's exact preprocessing, batched,
on the build's device); BLIP through transformers' BlipForImageTextRetrieval and BlipProcessor.
Scores are cached by (model identity, caption, sha256 of the image's bytes): images are read and
hashed on every run, decoded and scored only on a cache miss. Nothing about the images is stored.
"""
from __future__ import annotations

import hashlib
import io
from typing import Optional

import numpy as np

from dataclasses import dataclass

from ...errors import BuildError
from ...models.preflight import ModelUnavailable
from ...models.uses import ModelUse
from ..cache import StepCache, cache_key
from ..step import CaptionStep, bounds, in_range

FIELD = "captions.filters.source_image"
MISSING, CLIP, ITM = "source_image_missing", "source_image_clip", "source_image_itm"


@dataclass(frozen=True)
class SourceClipConfig:
    model: str                   # as score.clip.model
    pretrained: Optional[str] = None
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass(frozen=True)
class SourceItmConfig:
    model: str                   # a transformers BLIP image-text retrieval model: Hub id or local folder
    revision: Optional[str] = None
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass(frozen=True)
class SourceImageConfig:
    clip: Optional[SourceClipConfig] = None
    itm: Optional[SourceItmConfig] = None


def read_image(ref) -> tuple[Optional[bytes], Optional[str]]:
    """(the encoded bytes, None) or (None, why they cannot be had)."""
    if isinstance(ref, (bytes, bytearray)):
        return bytes(ref), None
    if not ref:  # MISSING_IMAGE or None
        return None, "the row names no image"
    try:
        with open(ref, "rb") as f:
            return f.read(), None
    except OSError as e:
        return None, f"cannot read {ref}: {e.strerror or e}"


def decode(data: bytes):
    """The image as RGB PIL, or None when it does not decode."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except Exception:  # PIL raises UnidentifiedImageError, OSError, ValueError, DecompressionBombError...
        return None


class ItmScorer:
    """BLIP image-text matching probabilities, batched."""

    def __init__(self, model: str, revision: Optional[str], device):
        import transformers
        from transformers import BlipForImageTextRetrieval, BlipProcessor
        transformers.utils.logging.disable_progress_bar()  # the funnel shows progress; loading bars are noise

        from ...models.builtin import builtin_dir
        from ...models.ref import BUILTIN, ModelRef
        ref = ModelRef.parse(model)
        source = str(builtin_dir(ref.name)) if ref.kind == BUILTIN else str(ref.path()) if ref.is_local else ref.name
        try:
            self.processor = BlipProcessor.from_pretrained(source, revision=revision)
            self.model = BlipForImageTextRetrieval.from_pretrained(source, revision=revision).to(device).eval()
        except OSError as e:
            raise BuildError(f"{FIELD}.itm: cannot load {model!r}: {e}") from None
        self.device = device

    def score(self, images: list, texts: list[str]) -> np.ndarray:
        import torch
        inputs = self.processor(images=images, text=texts, return_tensors="pt", padding=True, truncation=True,
                                max_length=self.model.config.text_config.max_position_embeddings).to(self.device)
        with torch.inference_mode():
            logits = self.model(**inputs, use_itm_head=True).itm_score
        return logits.float().softmax(dim=-1)[:, 1].cpu().numpy()


class SourceImageStep(CaptionStep):
    name = "source_image"
    summary = "agreement with the caption's original image"
    order = 200
    legacy = "later"
    Config = SourceImageConfig
    schema = {'description': 'Agreement of each caption with its original image (sources with images or '
                             'image_column; every source must have them). Captions whose image is missing or '
                             'unreadable are dropped and counted in their own funnel row, source_image_missing.',
              'type': 'object',
              'additionalProperties': False,
              'minProperties': 1,
              'properties': {'clip': {'description': 'Cosine similarity of the caption (no prefix) and its image '
                                                     'under an open_clip model, computed as score.clip computes '
                                                     "it, as Data-Juicer's image_text_similarity_filter. Keep min "
                                                     '<= cosine <= max. Set min, max or both.',
                                      'type': 'object',
                                      'additionalProperties': False,
                                      'required': ['model'],
                                      'properties': {'model': {'description': 'An open_clip model, as '
                                                                              'score.clip.model (e.g. ViT-B-32 '
                                                                              'with pretrained openai, as the '
                                                                              'paper).',
                                                               'type': 'string',
                                                               'minLength': 1},
                                                     'pretrained': {'description': 'open_clip pretrained tag or a '
                                                                                   'local checkpoint file, as '
                                                                                   'score.clip.pretrained.',
                                                                    'type': 'string',
                                                                    'minLength': 1},
                                                     'min': {'description': 'Smallest score kept (inclusive).',
                                                             'type': 'number',
                                                             'minimum': -1,
                                                             'maximum': 1},
                                                     'max': {'description': 'Largest score kept (inclusive).',
                                                             'type': 'number',
                                                             'minimum': -1,
                                                             'maximum': 1}}},
                             'itm': {'description': 'BLIP image-text matching probability softmax(itm logits)[1], '
                                                    "as Data-Juicer's image_text_matching_filter. Keep min <= "
                                                    'score <= max. Set min, max or both.',
                                     'type': 'object',
                                     'additionalProperties': False,
                                     'required': ['model'],
                                     'properties': {'model': {'description': 'A transformers BLIP image-text '
                                                                             'retrieval model '
                                                                             '(BlipForImageTextRetrieval): a Hub '
                                                                             'id such as '
                                                                             'Salesforce/blip-itm-base-coco '
                                                                             "(Data-Juicer's default) or a local "
                                                                             'folder saved with save_pretrained '
                                                                             '(relative to the recipe file).',
                                                              'type': 'string',
                                                              'minLength': 1},
                                                    'revision': {'description': 'Hub revision of the model; pin a '
                                                                                'commit sha for reproducible '
                                                                                'builds.',
                                                                 'type': 'string',
                                                                 'minLength': 1},
                                                    'min': {'description': 'Smallest score kept (inclusive).',
                                                            'type': 'number',
                                                            'minimum': 0,
                                                            'maximum': 1},
                                                    'max': {'description': 'Largest score kept (inclusive).',
                                                            'type': 'number',
                                                            'minimum': 0,
                                                            'maximum': 1}}}}}
    scored = (CLIP, ITM)
    batch_size = 32

    @classmethod
    def funnel(cls, cfg: SourceImageConfig, filters) -> list[tuple[str, str]]:
        rows = [(MISSING, "captions whose original image can be read")]
        if cfg.clip:
            pretrained = f", {cfg.clip.pretrained}" if cfg.clip.pretrained else ""
            rows.append((CLIP, f"cosine {bounds(cfg.clip.min, cfg.clip.max)} ({cfg.clip.model}{pretrained})"))
        if cfg.itm:
            rows.append((ITM, f"BLIP ITM {bounds(cfg.itm.min, cfg.itm.max)} ({cfg.itm.model})"))
        return rows

    @classmethod
    def models(cls, value: dict, at: tuple) -> list[ModelUse]:
        from ...models.builtin import CLIP_MODELS, ITM_MODELS
        uses = []
        if value.get("clip"):
            uses.append(ModelUse(value["clip"], at + ("clip",), "clip", digest=f"{FIELD}.clip",
                                 builtins=CLIP_MODELS, what="the source-image CLIP", caption_prefix=""))
        if value.get("itm"):
            uses.append(ModelUse(value["itm"], at + ("itm",), "folder", digest=f"{FIELD}.itm",
                                 builtins=ITM_MODELS, what="the BLIP model",
                                 expected="a BLIP model saved with save_pretrained, or a Hub id org/name"))
        return uses

    @classmethod
    def check(cls, c, value, at, data) -> None:
        from ...recipe.checks import check_clip, check_model_use
        from ...registry import registry
        for i, src in enumerate(data["captions"]["sources"]):
            source = registry().find("source", src["type"])
            key = source.images if source is not None else None
            if not (key and src.get(key)):
                c.bad(("captions", "sources", i), f"{'.'.join(at)} needs each caption's original image: set"
                      " images (llava_json) or image_column (hf_dataset) on every source")
        for name, sub in value.items():
            if "min" not in sub and "max" not in sub:
                c.bad(at + (name,), "set min, max or both: without a bound it keeps everything")
        if "clip" in value:
            check_clip(c, value["clip"], at + ("clip",))
        for use in cls.models(value, at):
            if use.kind == "folder":
                check_model_use(c, use)

    @classmethod
    def preflight(cls, cfg: SourceImageConfig, filters) -> None:
        check_available(cfg)

    @classmethod
    def from_config(cls, cfg: SourceImageConfig, env) -> "SourceImageStep":
        return cls(cfg, env.device, env.cache_dir)

    def __init__(self, cfg: SourceImageConfig, device, cache_dir=None):
        from ...models.digests import clip_digest, model_digest
        self.rows = (MISSING,) + ((CLIP,) if cfg.clip else ()) + ((ITM,) if cfg.itm else ())
        super().__init__()
        check_available(cfg)
        from ...models.loading import resolve_device
        self.cfg, self.device = cfg, resolve_device(device)
        self.identity = {}
        if cfg.clip:
            self.identity[CLIP] = clip_digest(cfg.clip.model, cfg.clip.pretrained)
        if cfg.itm:
            self.identity[ITM] = model_digest(cfg.itm.model, cfg.itm.revision, "config.json")
        self.caches = {row: StepCache(row, cache_dir) for row in self.identity}
        self._scorers: dict = {}  # loaded on the first cache miss: a cached rerun loads no model

    def _scorer(self, row: str):
        if row not in self._scorers:
            from ...models.loading import load_clip
            from ...models.clip import ClipScorer
            if row == CLIP:
                clip = self.cfg.clip
                try:
                    bundle = load_clip(clip.model, clip.pretrained, self.device)
                except ModelUnavailable as e:
                    raise BuildError(f"{FIELD}.clip: {e}") from None
                self._scorers[row] = ClipScorer(bundle, prefix="", device=self.device)
            else:
                self._scorers[row] = ItmScorer(self.cfg.itm.model, self.cfg.itm.revision, self.device)
        return self._scorers[row]

    def judge(self, batch):
        verdicts: list = [None] * len(batch)
        digests, pictures = {}, {}
        for i, caption in enumerate(batch):
            data, why = read_image(caption.image)
            if data is None:
                verdicts[i] = (MISSING, why)
            else:
                digests[i] = hashlib.sha256(data).hexdigest()
                pictures[i] = data  # encoded; decoded only if some step misses the cache
        for row, limits in ((CLIP, self.cfg.clip), (ITM, self.cfg.itm)):
            if limits is None:
                continue
            alive = [i for i in range(len(batch)) if verdicts[i] is None]
            keys = {i: cache_key(self.identity[row], batch[i].text, digests[i]) for i in alive}
            values = self.caches[row].get_many(keys.values())
            misses = [i for i in alive if keys[i] not in values]
            todo = []
            for i in misses:
                if isinstance(pictures[i], bytes):
                    pictures[i] = decode(pictures[i])
                if pictures[i] is None:
                    verdicts[i] = (MISSING, f"unreadable image {_name(batch[i].image)}")
                else:
                    todo.append(i)
            fresh = {}
            if todo:
                scores = self._score(row, [pictures[i] for i in todo], [batch[i].text for i in todo])
                fresh = {keys[i]: float(s) for i, s in zip(todo, scores)}
                self.caches[row].put_many(fresh)
            values.update(fresh)
            self.tally(row, len(fresh), len(alive) - len(misses))
            for i in alive:
                if verdicts[i] is None and not in_range(values[keys[i]], limits.min, limits.max):
                    verdicts[i] = (row, f"{'cosine' if row == CLIP else 'itm'} {values[keys[i]]:.4f}")
        return verdicts

    def _score(self, row: str, images: list, texts: list[str]) -> np.ndarray:
        if row == CLIP:
            import torch
            scorer = self._scorer(row)  # original images differ in size: embedded one at a time, scored together
            emb = torch.cat([scorer.image_embeddings(np.array(im)[None]) for im in images])  # writable copies
            return scorer.similarity(emb, texts)
        return self._scorer(row).score(images, texts)

    def close(self):
        for cache in self.caches.values():
            cache.close()


def _name(ref) -> str:
    return ref if isinstance(ref, str) else f"({len(ref)} bytes)"


def check_available(cfg: SourceImageConfig) -> None:
    """Preflight: each model can be had (cached, local or on the Hub); exit 1 if not, or exit 2 at its
    field when its files are here but broken (a config that is not JSON, no weights file)."""
    from ...errors import InputError
    from ...models.builtin import ITM_MODELS
    from ...models.preflight import BrokenModel, builtin_name, check_clip_available, check_folder_model_available
    from ...models.ref import BUILTIN, ModelRef
    field = FIELD
    try:
        if cfg.clip:
            field = f"{FIELD}.clip.model"
            check_clip_available(cfg.clip.model, cfg.clip.pretrained)
        if cfg.itm:
            field = f"{FIELD}.itm.model"
            ref = ModelRef.parse(cfg.itm.model)
            if ref.kind == BUILTIN:
                builtin_name(ref, ITM_MODELS, "BLIP model")
            else:
                check_folder_model_available(cfg.itm.model, cfg.itm.revision, "BLIP model")
    except BrokenModel as e:
        raise InputError(field, str(e)) from None
    except ModelUnavailable as e:
        raise BuildError(f"{FIELD}: {e}") from None
