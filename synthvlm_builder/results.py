"""What the API's build, captions and plan return (api.py; the build's is execution/runner.py's own
result); verify, publish and export return the objects their release/ modules make (VerifyResult,
PublishResult, ExportResult). Each has the data as attributes and `summary()`, the text the CLI prints
for it."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

from .recipe.config import Caption, Recipe
from .reporter import datasets_bars


@dataclass(frozen=True)
class BuildResult:
    path: Path             # the build dir (the Hub layout: README.md, data/, recipe.lock.json, ...)
    rows: int
    fingerprint: str       # of the recipe's data fields; stats["identity"] adds the input files' digests
    stats: dict            # stats.json: the caption and selection funnels, timings
    action: str = "built"  # or "exists": the dir already held this build and nothing was done
    published: Any = None  # the PublishResult when built with push=True
    seconds: Optional[float] = None  # wall time of the call that returned it
    url: Optional[str] = None  # the store a build in object storage lives in (`path` is its local copy)

    @property
    def identity(self) -> str:
        return self.stats["identity"]

    @cached_property
    def dataset(self):
        """The build's rows as a `datasets.Dataset` (its Features: stages/rows.py), loaded on first use."""
        return self.load()

    def load(self, **options):
        """The build as a `datasets.Dataset`, read from the data files its manifest lists (nothing else in
        the dir); `options` go to `datasets.load_dataset` (cache_dir, keep_in_memory, ...)."""
        import datasets

        from .layout import release_data
        files = [str(f) for f in release_data(self.path)]
        with datasets_bars():
            return datasets.load_dataset("parquet", data_files={"train": files}, split="train", **options)

    def summary(self) -> str:
        """What the CLI prints after a build: rows, the selection funnel, timings, how to load it."""
        from .release.assemble import summary
        return summary(self.url or self.path, self.stats, seconds=self.seconds)


@dataclass(frozen=True)
class CaptionsResult:
    funnel: dict                       # per source read, per filter dropped (with examples), kept
    captions: Optional[list[Caption]]  # the survivors, in order; None when they were written to `output`
    count: int
    output: Optional[Path] = None

    def summary(self) -> str:
        from .curation.captions import format_funnel
        return format_funnel(self.funnel)


@dataclass(frozen=True)
class PlanResult:
    recipe: Recipe
    plan: Any                          # execution/plan.py's Plan: counts, shards, estimate
    measured: Optional[dict] = None    # with measure=True: the timed denoising steps and the wall estimate
    nodes: Optional[dict] = None       # with nodes=N: shards and images per node, wall time (execution/measure.py)

    @property
    def fingerprint(self) -> str:
        return self.plan.fingerprint

    @cached_property
    def content(self) -> dict:
        """The digest of each local caption file (read on first use: the content identity's inputs)."""
        from .execution.report import local_source_digests
        return local_source_digests(self.recipe)

    def to_json(self) -> dict:
        """What `plan --json` prints."""
        extra = {"measured": self.measured} if self.measured else {}
        extra.update({"nodes": self.nodes} if self.nodes else {})
        return {**self.plan.to_json(self.recipe), "content": self.content, **extra}

    def summary(self) -> str:
        from .execution.report import format_plan
        text = format_plan(self.recipe, self.plan)
        if self.measured:
            from .execution.measure import format_measured
            expected = self.plan.expected_candidates
            text += "\n" + format_measured(self.measured, self.plan.candidates if expected is None else expected)
        if self.nodes:
            from .execution.measure import format_spread
            text += "\n" + format_spread(self.nodes)
        return text

    def __str__(self) -> str:
        return self.summary()
