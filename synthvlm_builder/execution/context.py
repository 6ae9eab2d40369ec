"""What every step of one build knows: the recipe, its identity, the output dir and the work dir. The
runner (execution/runner.py) makes one per build and hands it to its executor (execution/executor.py)
and, once every shard is done, to release/assemble.py, which reads it as this type."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

from ..recipe import Recipe
from .outdir import OutputDir
from .plan import shard_ranges
from .workdir import WorkDir


@dataclass(frozen=True)
class Curated:
    """A build's curated captions taken as they are instead of running the caption stage (execution/rebuild.py:
    a release made again from its own files). `inputs` are the content identity's digests as the release's
    lock records them (its caption sources are not at hand); `sha256` is the captions file's, which writing
    `captions` again must reproduce."""
    captions: list
    funnel: dict
    inputs: dict
    sha256: str


@dataclass
class BuildContext:
    recipe: Recipe
    fingerprint: str
    identity: str            # the content identity: the fingerprint joined with the input files' digests
    inputs: dict             # execution/identity.py input_digests
    target: OutputDir
    work: WorkDir
    executor: str
    device: str
    caption_meta: dict | None = None  # the curated captions' record (workdir.py), once they are curated
    generation_seconds: float = 0.0   # this run's wall time generating (stats.json)
    curated: Curated | None = None    # the captions of a rebuild, taken instead of the caption stage
    # select.budget (execution/target.py): whether no further shard is needed, asked by the local executor
    # before each shard; and, once generation is over, the shards the dataset is selected from.
    enough: Callable[[], bool] = field(default=lambda: False, repr=False)
    shards_used: int | None = None

    @property
    def out(self) -> Path:
        return self.target.out

    @property
    def n_shards(self) -> int:
        planned = len(shard_ranges(self.caption_meta["count"], self.recipe.execution.shard_size))
        return planned if self.shards_used is None else min(planned, self.shards_used)
