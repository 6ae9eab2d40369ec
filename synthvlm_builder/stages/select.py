"""Selection over candidate scores: thresholds, best-of-k, global top-N.

Works on score columns only (a few bytes per candidate, so a million candidates
fit in memory); the images stay in the shard files until the final write.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BuildError
from ..recipe.config import SelectConfig
from .rows import SCORES


@dataclass
class Candidates:
    """The score columns (rows.SCORES) of every candidate, in plan order."""
    id: np.ndarray          # str
    caption_id: np.ndarray  # str
    scores: dict            # column name -> float32 array

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


def _rank(ids: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices ordered best first: higher score, then smaller id (a total, stable order)."""
    return np.lexsort((ids, -score.astype(np.float64)))


def select(c: Candidates, cfg: SelectConfig) -> Selection:
    keep = np.ones(len(c), dtype=bool)
    reasons = np.full(len(c), "", dtype=object)
    steps = [{"step": "candidates", "kept": int(keep.sum())}]
    for column in SCORES:
        bound = getattr(cfg, f"min_{column}", None)
        if bound is not None:
            before = keep.copy()
            keep &= c.scores[column] >= bound  # NaN never passes a threshold
            step = f"min_{column} >= {bound}"
            reasons[before & ~keep] = step
            steps.append({"step": step, "dropped": int(before.sum()) - int(keep.sum()), "kept": int(keep.sum())})

    if cfg.per_caption == "best":
        before = int(keep.sum())
        idx = np.flatnonzero(keep)
        order = idx[_rank(c.id[idx], c.score[idx])]
        _, first = np.unique(c.caption_id[order], return_index=True)  # first = best per caption
        passed_thresholds = keep
        keep = np.zeros(len(c), dtype=bool)
        keep[order[first]] = True
        reasons[passed_thresholds & ~keep] = "best per caption"
        steps.append({"step": "best per caption", "dropped": before - int(keep.sum()), "kept": int(keep.sum())})

    passed = int(keep.sum())
    idx = np.flatnonzero(keep)
    top = idx[_rank(c.id[idx], c.score[idx])][: cfg.size]
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


def format_selection(funnel: dict) -> str:
    lines = []
    for s in funnel["steps"]:
        dropped = f"  (-{s['dropped']:,})" if "dropped" in s else ""
        lines.append(f"  {s['step']:<28} {s['kept']:>10,}{dropped}")
    return "\n".join(lines)
