"""Adaptive best-of-k (recipe `generate.images_per_caption: {max, until: {min_score}}`): a shard's
candidates made in rounds.

Round k generates candidate k of every caption of the shard still below the stopping rule, in plan
order; the round's candidates are scored, and a caption whose best score so far meets the rule gets no
more. Round 0 covers every caption, so a caption always has at least one candidate, and `max` rounds at
most. Seeds stay derive_seed(seed, caption id, k) and each round's items are batched by
execution/worker.py `batches`, as a fixed-k shard's, so every executor forms the same batches; which
captions a round holds follows from the earlier rounds' scores, so each candidate records the shard
positions of the captions in its batch (stages/rows.py ROUND_BATCH) and `verify` rebuilds that batch
from it without redoing the rounds. A killed shard is redone whole (execution/workdir.py), rounds and all.
"""
from __future__ import annotations

import numpy as np


class Rounds:
    """Which captions of a shard (positions 0..n-1) round k makes a candidate for, given the scores so far."""

    def __init__(self, n_captions: int, most: int, min_score: float | None):
        self.most, self.min_score = most, min_score
        self.best = np.full(n_captions, -np.inf)
        self.taken = np.zeros(n_captions, dtype=np.int64)

    def active(self, k: int) -> list[int]:
        """Round k's captions, in plan order: all of them in round 0; then those whose best score is below
        the rule (NaN, a candidate that could not be scored, never meets it)."""
        if k >= self.most:
            return []
        if k == 0 or self.min_score is None:
            return list(range(len(self.best)))
        return [int(i) for i in np.flatnonzero(~(self.best >= self.min_score) & (self.taken == k))]

    def record(self, positions: list[int], scores) -> None:
        """Round results: the combined score of one candidate of each caption at `positions`."""
        pos = np.asarray(positions, dtype=np.int64)
        values = np.asarray(scores, dtype=np.float64)
        self.best[pos] = np.fmax(self.best[pos], values)
        self.taken[pos] += 1


def histogram(taken) -> dict[str, int]:
    """Candidates per caption -> captions, as stats.json, the card and the markers keep it (keys are
    counts as strings: JSON object keys)."""
    counts = np.bincount(np.asarray(taken, dtype=np.int64))
    return {str(n): int(c) for n, c in enumerate(counts) if c}


def merge_histograms(histograms) -> dict[str, int]:
    out: dict[int, int] = {}
    for h in histograms:
        for n, c in (h or {}).items():
            out[int(n)] = out.get(int(n), 0) + int(c)
    return {str(n): out[n] for n in sorted(out)}


def mean_candidates(hist: dict) -> float | None:
    captions = sum(hist.values())
    return sum(int(n) * c for n, c in hist.items()) / captions if captions else None
