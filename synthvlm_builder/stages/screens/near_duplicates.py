"""near_duplicates: near-identical images across the whole build, the best-scored of each group kept
(ties: the smaller id): within `phash_distance` bits of their perceptual hashes (column phash) or with
CLIPScore-model image embeddings of at least `clip_cosine` (kept in the work state only); faiss finds
the pairs (stages/neardup.py)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Optional

from ..parts import Column, ImageScreen


@dataclass(frozen=True)
class NearDuplicates:
    phash_distance: Optional[int] = None
    clip_cosine: Optional[float] = None


class NearDuplicatesScreen(ImageScreen):
    name = "near_duplicates"
    summary = "near-identical images across the build"
    order = 30
    legacy = "null"
    Config = NearDuplicates
    schema = {'description': 'Drop near-identical images across the whole build, keeping the best-scored of each '
                             'group (ties: the smaller id). Set one or both criteria; an image is a near-duplicate '
                             'of another when either holds.',
              'type': 'object',
              'additionalProperties': False,
              'minProperties': 1,
              'properties': {'phash_distance': {'description': 'Perceptual hash (imagehash pHash, 64 bits): images '
                                                               'within this Hamming distance are near-duplicates. '
                                                               'Column `phash`.',
                                                'type': 'integer',
                                                'minimum': 0,
                                                'maximum': 16},
                             'clip_cosine': {'description': 'Images whose CLIPScore-model image embeddings have at '
                                                            'least this cosine are near-duplicates (approximate '
                                                            'neighbour search with faiss HNSW).',
                                             'type': 'number',
                                             'minimum': 0.5,
                                             'maximum': 1}}}

    @classmethod
    def columns(cls, cfg: NearDuplicates) -> list[Column]:
        out = []
        if cfg.phash_distance is not None:
            out.append(Column("phash", "string", "64-bit perceptual hash (imagehash pHash), 16 hex digits",
                              selection=True))
        if cfg.clip_cosine is not None:
            out.append(Column("clip_embedding", "binary", "normalised CLIPScore image embedding, float16",
                              published=False, selection=True))
        return out

    @classmethod
    def preflight(cls, cfg: NearDuplicates) -> None:
        from ...errors import BuildError
        needed = (["imagehash"] if cfg.phash_distance is not None else []) + ["faiss", "scipy"]
        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        if missing:
            raise BuildError(f"screen.near_duplicates needs {', '.join(missing)}: pip install"
                             " 'synthvlm-builder[screen]'")

    @classmethod
    def load(cls, cfg: NearDuplicates, context):
        return _Hashes(cfg)

    @classmethod
    def step_name(cls, cfg: NearDuplicates) -> str:
        parts = ([f"pHash distance <= {cfg.phash_distance}"] if cfg.phash_distance is not None else []) + (
            [f"CLIP cosine >= {cfg.clip_cosine}"] if cfg.clip_cosine is not None else [])
        return "near duplicates (" + " or ".join(parts) + ")"

    @classmethod
    def keep(cls, cfg: NearDuplicates, candidates, alive):
        """Among the candidates still in, keep one per near-duplicate group (the best scored)."""
        import numpy as np

        from .. import neardup
        idx = np.flatnonzero(alive)
        pairs = []
        if cfg.phash_distance is not None:
            pairs.append(neardup.phash_pairs(neardup.phash_codes(candidates.columns["phash"][idx]),
                                             cfg.phash_distance))
        if cfg.clip_cosine is not None:
            pairs.append(neardup.embedding_pairs(candidates.embeddings("clip_embedding")[idx], cfg.clip_cosine))
        kept, _ = neardup.keep_one_per_group(len(idx), np.concatenate(pairs), candidates.score[idx],
                                             candidates.id[idx])
        mask = np.zeros(len(candidates), dtype=bool)
        mask[idx[kept]] = True
        return mask


class _Hashes:
    """pHash of each image, and the CLIPScore model's image embedding (already computed for clip_score)."""

    def __init__(self, cfg: NearDuplicates):
        self.cfg = cfg

    def score(self, batch) -> dict:
        import numpy as np

        from ..neardup import phashes
        out = {}
        if self.cfg.phash_distance is not None:
            out["phash"] = phashes(batch.host)
        if self.cfg.clip_cosine is not None:
            out["clip_embedding"] = [e.tobytes() for e in batch.clip_embeddings().cpu().numpy().astype(np.float16)]
        return out
