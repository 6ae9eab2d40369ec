"""The base of every executor (registry kind "executor", one module each in execution/executors/): how
a build's pending shards get run. Every executor runs execution/worker.py's ShardWorker on each shard
(so batches are formed the same way and outputs are bit-identical across executors) and leaves the same
shard files and completion markers in the work dir, so a build started on one resumes on another.

An executor declares its `name` (execution.executor), the schema of its options (execution.<name>:
`schema`, None when it has none) and `run(ctx, pending, sizes, progress)`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Component

if TYPE_CHECKING:  # validate and plan scan the executors: they need not load a build's machinery
    from .context import BuildContext


class Executor(Component):
    kind = "executor"
    schema = None

    @classmethod
    def run(cls, ctx: BuildContext, pending: list[int], sizes, progress) -> None:
        """Run the shards `pending` of the build `ctx` (execution/context.py); `sizes` is the
        build's batch size (execution/batching.py BatchSize); `progress()` opens the progress bar of the
        images to generate (a context manager with `update(n)`), once the models are loaded."""
        raise NotImplementedError
