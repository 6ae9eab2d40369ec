"""Selection over candidate scores: thresholds, screens, near-duplicates, best-of-k, global top-N.

Works on the selection columns only (a few bytes per candidate, so a million candidates
fit in memory); the images stay in the shard files until the final write.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BuildError
from ..recipe.config import Section
from .budget import budget_of, caption_ranks, passing, prefix_captions


@dataclass
class Candidates:
    """The selection columns (rows.selection_columns) of every candidate, in plan order."""
    id: np.ndarray          # str
    caption_id: np.ndarray  # str
    scores: dict            # score column name -> float32 array
    columns: dict = field(default_factory=dict)  # the other selection columns (a screen's, e.g. phash)

    @property
    def score(self) -> np.ndarray:
        return self.scores["score"]

    def embeddings(self, name: str) -> np.ndarray:
        """A binary column of float16 vectors (e.g. clip_embedding) as an (N, D) float32 array."""
        values = self.columns[name]
        return np.stack([np.frombuffer(b, dtype=np.float16) for b in values]).astype(np.float32) \
            if len(values) else np.zeros((0, 1), np.float32)

    def __len__(self) -> int:
        return len(self.id)

    @classmethod
    def from_table(cls, table, scores: tuple[str, ...]) -> "Candidates":
        """From candidate rows (an Arrow table holding the selection columns; `scores`: rows.scores)."""
        cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        return cls(id=cols["id"].astype(str), caption_id=cols["caption_id"].astype(str),
                   scores={name: cols[name] for name in scores},
                   columns={name: cols[name] for name in cols if name not in scores + ("id", "caption_id")})


@dataclass
class Selection:
    mask: np.ndarray        # bool per candidate, plan order: True = becomes a row
    ids: list[str]          # the selected ids, plan order
    funnel: dict            # counts of every step, for stats.json and the card
    reasons: np.ndarray     # object, per candidate: "" when selected, else the step that dropped it


def rank(ids: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices ordered best first: higher score, then smaller id (a total, stable order)."""
    return np.lexsort((ids, -score.astype(np.float64)))


def rules(cfg: Section, screen: Section) -> list[tuple[str, str, str, float]]:
    """(funnel step, column, ">=" or "<=", bound): the recipe's thresholds on scores (select.min_<column>,
    select.max_<column>), then its screens' limits."""
    from ..recipe.components import threshold_owners
    out = [(f"{name} {'>=' if name.startswith('min_') else '<='} {cfg[name]}", name[4:],
            ">=" if name.startswith("min_") else "<=", cfg[name]) for name in threshold_owners()
           if cfg.get(name) is not None]
    return out + [(f"{column} {op} {bound}", column, op, bound)
                  for cls, value in _screens(screen) for column, op, bound in cls.limits(value)]


def _screens(screen: Section) -> list:
    from ..registry import registry
    return [(cls, screen[cls.name]) for cls in registry().all("screen") if screen.get(cls.name) is not None]


def select(c: Candidates, cfg: Section, screen: Section = Section("screen")) -> Selection:
    keep = np.ones(len(c), dtype=bool)
    reasons = np.full(len(c), "", dtype=object)
    steps = [{"step": "candidates", "kept": int(keep.sum())}]

    def step(name: str, mask: np.ndarray) -> None:
        nonlocal keep
        before = keep.copy()
        keep &= mask
        reasons[before & ~keep] = name
        steps.append({"step": name, "dropped": int(before.sum()) - int(keep.sum()), "kept": int(keep.sum())})

    budget = budget_of(cfg)
    if budget is not None:  # an accepted-rows target: the shortest prefix of captions holding `size` rows
        ranks = caption_ranks(c.caption_id)
        ok = passing({**c.scores, **c.columns}, rules(cfg, screen))
        used, reached = prefix_captions(ranks, ok, cfg.per_caption, cfg.size, budget)
        kind, limit = budget
        streamed = {kind: limit, "captions_used": used, "candidates_used": int((ranks < used).sum()),
                    "target_reached": reached}
        step(f"first {used:,} captions (budget {limit:,} {kind})", ranks < used)
    for name, column, op, bound in rules(cfg, screen):
        values = c.scores[column] if column in c.scores else c.columns[column]
        step(name, values >= bound if op == ">=" else values <= bound)  # NaN never passes either bound
    for cls, value in _screens(screen):
        mask = cls.keep(value, c, keep)
        if mask is not None:
            step(cls.step_name(value), mask)

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
    if budget is not None:
        funnel["budget"] = streamed
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
