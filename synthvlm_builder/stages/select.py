"""Selection over candidate scores: thresholds, screens, near-duplicates, best-of-k, global top-N.

Works on the selection columns only (a few bytes per candidate, so a million candidates
fit in memory); the images stay in the shard files until the final write.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BuildError
from ..recipe.config import ScreenConfig, SelectConfig
from . import neardup


@dataclass
class Candidates:
    """The selection columns (rows.selection_columns) of every candidate, in plan order."""
    id: np.ndarray          # str
    caption_id: np.ndarray  # str
    scores: dict            # score column name -> float32 array
    phash: np.ndarray | None = None            # 16-hex-digit strings, when near-duplicates use pHash
    clip_embedding: np.ndarray | None = None   # (N, D) float32, when near-duplicates use CLIP

    @property
    def score(self) -> np.ndarray:
        return self.scores["score"]

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class Selection:
    mask: np.ndarray        # bool per candidate, plan order: True = becomes a row
    ids: list[str]          # the selected ids, plan order
    funnel: dict            # counts of every step, for stats.json and the card
    reasons: np.ndarray     # object, per candidate: "" when selected, else the step that dropped it


def rank(ids: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices ordered best first: higher score, then smaller id (a total, stable order)."""
    return np.lexsort((ids, -score.astype(np.float64)))


def rules(cfg: SelectConfig, screen: ScreenConfig) -> list[tuple[str, str, float]]:
    """(column, ">=" or "<=", bound): the recipe's thresholds on scores and its screens' limits."""
    out = [(name, ">=", getattr(cfg, f"min_{name}")) for name in ("clip_score", "ssim", "score", "aesthetic")
           if getattr(cfg, f"min_{name}") is not None]
    out += [(name, "<=", getattr(screen, name).max) for name in ("nsfw", "watermark") if getattr(screen, name)]
    return out


def select(c: Candidates, cfg: SelectConfig, screen: ScreenConfig = ScreenConfig()) -> Selection:
    keep = np.ones(len(c), dtype=bool)
    reasons = np.full(len(c), "", dtype=object)
    steps = [{"step": "candidates", "kept": int(keep.sum())}]

    def step(name: str, mask: np.ndarray) -> None:
        nonlocal keep
        before = keep.copy()
        keep &= mask
        reasons[before & ~keep] = name
        steps.append({"step": name, "dropped": int(before.sum()) - int(keep.sum()), "kept": int(keep.sum())})

    for column, op, bound in rules(cfg, screen):
        values = c.scores[column]
        if op == ">=":  # NaN never passes either kind of bound
            step(f"min_{column} >= {bound}", values >= bound)
        else:
            step(f"{column} <= {bound}", values <= bound)
    if screen.near_duplicates is not None:
        step(_near_dup_name(screen), _near_dup_keep(c, keep, screen))

    if cfg.per_caption == "best":
        before = int(keep.sum())
        idx = np.flatnonzero(keep)
        order = idx[rank(c.id[idx], c.score[idx])]
        _, first = np.unique(c.caption_id[order], return_index=True)  # first = best per caption
        passed_thresholds = keep
        keep = np.zeros(len(c), dtype=bool)
        keep[order[first]] = True
        reasons[passed_thresholds & ~keep] = "best per caption"
        steps.append({"step": "best per caption", "dropped": before - int(keep.sum()), "kept": int(keep.sum())})

    passed = int(keep.sum())
    idx = np.flatnonzero(keep)
    top = idx[rank(c.id[idx], c.score[idx])][: cfg.size]
    mask = np.zeros(len(c), dtype=bool)
    mask[top] = True
    reasons[keep & ~mask] = f"top {cfg.size} by score"
    steps.append({"step": f"top {cfg.size} by score", "dropped": passed - len(top), "kept": len(top)})

    funnel = {"candidates": len(c), "passed": passed, "selected": len(top), "requested": cfg.size,
              "steps": steps}
    if len(top):
        chosen = c.score[mask]
        funnel["score_range"] = [float(chosen.min()), float(chosen.max())]
    if len(top) < cfg.size and not cfg.allow_fewer:
        raise BuildError(f"only {len(top)} of the {cfg.size} requested rows passed selection "
                         "(set select.allow_fewer: true to accept fewer, or loosen the thresholds)\n"
                         + format_selection(funnel))
    return Selection(mask=mask, ids=[str(i) for i in c.id[mask]], funnel=funnel, reasons=reasons)


def _near_dup_name(screen: ScreenConfig) -> str:
    near = screen.near_duplicates
    parts = ([f"pHash distance <= {near.phash_distance}"] if near.phash_distance is not None else []) + (
        [f"CLIP cosine >= {near.clip_cosine}"] if near.clip_cosine is not None else [])
    return "near duplicates (" + " or ".join(parts) + ")"


def _near_dup_keep(c: Candidates, alive: np.ndarray, screen: ScreenConfig) -> np.ndarray:
    """Among the candidates still in, keep one per near-duplicate group (the best scored)."""
    near, idx = screen.near_duplicates, np.flatnonzero(alive)
    pairs = []
    if near.phash_distance is not None:
        pairs.append(neardup.phash_pairs(neardup.phash_codes(c.phash[idx]), near.phash_distance))
    if near.clip_cosine is not None:
        pairs.append(neardup.embedding_pairs(c.clip_embedding[idx], near.clip_cosine))
    kept, _ = neardup.keep_one_per_group(len(idx), np.concatenate(pairs), c.score[idx], c.id[idx])
    mask = np.zeros(len(c), dtype=bool)
    mask[idx[kept]] = True
    return mask


def format_selection(funnel: dict) -> str:
    lines = []
    for s in funnel["steps"]:
        dropped = f"  (-{s['dropped']:,})" if "dropped" in s else ""
        lines.append(f"  {s['step']:<28} {s['kept']:>10,}{dropped}")
    return "\n".join(lines)
