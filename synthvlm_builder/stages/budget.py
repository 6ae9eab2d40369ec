"""An accepted-rows target (`select.budget`): captions streamed in plan order until `select.size` rows
pass the thresholds, within a budget of captions or candidates.

The dataset is the selection over the shortest prefix of captions (plan order) that holds `size` rows
passing the thresholds (with per_caption best, a caption counts once, when any of its candidates
passes), cut to the budget: so it depends on the candidates alone, never on how many shards an executor
happened to finish, and a build is deterministic. The build stops making shards once a finished prefix
of them reaches the target (execution/runner.py), so the candidates past it cost nothing on the local
executor. Screens that judge candidates against each other (near-duplicates) run afterwards, in
selection, on the prefix: they may leave fewer rows than `size`, a shortfall reported as any other.
"""
from __future__ import annotations

import numpy as np


def budget_of(select) -> tuple[str, int] | None:
    """("captions" | "candidates", limit) of select.budget, or None when the recipe sets none."""
    value = select.get("budget")
    if not value:
        return None
    (kind, limit), = value.items()
    return kind, int(limit)


def passing(values: dict, rules) -> np.ndarray:
    """Per candidate: whether it passes every threshold rule (stages/select.py `rules`); `values`: column ->
    array."""
    n = len(next(iter(values.values()))) if values else 0
    keep = np.ones(n, dtype=bool)
    for _, column, op, bound in rules:
        v = values[column]
        keep &= (v >= bound) if op == ">=" else (v <= bound)
    return keep


def caption_ranks(caption_id: np.ndarray) -> np.ndarray:
    """Per candidate, its caption's index in plan order (the order captions first appear: caption by
    caption for fixed k, and round 0 holds every caption of a shard in plan order for adaptive k)."""
    _, first, inverse = np.unique(caption_id, return_index=True, return_inverse=True)
    order = np.empty(len(first), dtype=np.int64)
    order[np.argsort(first, kind="stable")] = np.arange(len(first))
    return order[inverse]


def prefix_captions(ranks: np.ndarray, ok: np.ndarray, per_caption: str, size: int, budget: tuple[str, int]
                    ) -> tuple[int, bool]:
    """(captions of the prefix, whether it reached `size`): the fewest captions in plan order holding
    `size` passing rows, at most what the budget allows."""
    n = int(ranks.max()) + 1 if len(ranks) else 0
    passed = np.bincount(ranks, weights=ok.astype(np.float64), minlength=n)
    rows = np.cumsum(passed > 0 if per_caption == "best" else passed)
    kind, limit = budget
    allowed = min(n, limit) if kind == "captions" else int(np.searchsorted(np.cumsum(np.bincount(ranks, minlength=n)),
                                                                           limit, side="right"))
    reached = np.flatnonzero(rows[:allowed] >= size)
    return (int(reached[0]) + 1, True) if len(reached) else (allowed, False)
