"""The build side of an accepted-rows target (`select.budget`, stages/budget.py): whether the shards
finished so far, a prefix in plan order, already hold `select.size` passing rows or spend the budget,
so that no further shard is made; and how many shards the dataset is selected from.

Counted per shard from its selection columns (a few bytes per candidate), each shard read once."""
from __future__ import annotations

import os

import numpy as np

from ..stages.budget import budget_of, passing
from ..stages.select import rules


class Target:
    def __init__(self, ctx):
        self.ctx = ctx
        recipe = ctx.recipe
        self.budget = budget_of(recipe.select)
        self.rules = rules(recipe.select, recipe.screen)
        self.counts: dict[int, tuple[int, int, int]] = {}  # shard -> (passing rows, captions, candidates)

    def _count(self, i: int) -> tuple[int, int, int]:
        if i not in self.counts:
            import pyarrow.parquet as pq
            columns = sorted({"caption_id", *(column for _, column, _, _ in self.rules)})
            table = pq.read_table(self.ctx.work.shard_path(i), columns=columns)
            values = {name: table.column(name).to_numpy(zero_copy_only=False) for name in columns}
            ok = passing({k: v for k, v in values.items() if k != "caption_id"}, self.rules)
            ids = values["caption_id"].astype(str)
            rows = len(np.unique(ids[ok])) if self.ctx.recipe.select.per_caption == "best" else int(ok.sum())
            self.counts[i] = (rows, len(np.unique(ids)), len(ids))
        return self.counts[i]

    def shards_needed(self) -> int | None:
        """The shards (from 0, all finished) that reach the target or spend the budget; None while the
        finished prefix does neither (and some shard is still to make)."""
        kind, limit = self.budget
        size = self.ctx.recipe.select.size
        rows = captions = candidates = 0
        for i in range(self.ctx.n_shards):
            if not os.path.exists(self.ctx.work.marker_path(i)):
                return None
            r, c, n = self._count(i)
            rows, captions, candidates = rows + r, captions + c, candidates + n
            if rows >= size or (captions if kind == "captions" else candidates) >= limit:
                return i + 1
        return self.ctx.n_shards

    def enough(self) -> bool:
        return self.shards_needed() is not None
