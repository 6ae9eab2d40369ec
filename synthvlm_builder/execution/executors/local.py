"""local: the embedded default; one process runs the shards one after another, the denoiser on the
device while a background thread encodes, scores and writes the previous batch (execution/worker.py)."""
from __future__ import annotations

from ..executor import Executor


class LocalExecutor(Executor):
    name = "local"
    summary = "one process"
    order = 10

    @classmethod
    def run(cls, ctx, pending: list[int], sizes, progress) -> None:
        from ..worker import ShardWorker, shard_items
        work = ctx.work
        worker = ShardWorker(ctx.recipe, ctx.device)
        worker.batch_size = sizes.resolve(worker, shard_items(ctx.recipe, work.captions.shard(pending[0]))[:8])
        with progress() as bar:
            written = [0]

            def on_written(n: int) -> None:  # scoring and writing keep up with generation, or not: shown
                written[0] += n
                bar.set_postfix_str(f"scored and written {written[0]:,}")

            for i in pending:
                if ctx.enough():  # select.budget reached by the shards before it (execution/target.py)
                    break
                marker = run_shard(worker, work, sizes, i, bar, on_written)
                work.log("shard_done", shard=i, rows=marker["rows"], seconds=marker["seconds"])


def run_shard(worker, work, sizes, index: int, bar, on_written=None) -> dict:
    """One shard; on out-of-memory the batch is halved for the rest of the build and the shard redone
    (its partial file is already gone, atomic_path; finished shards are not touched)."""
    from ..batching import is_oom
    while True:
        try:
            return worker.run(index, work.captions.shard(index), work, on_images=bar.update, on_written=on_written)
        except Exception as e:
            if not is_oom(e):
                raise
            worker.batch_size = sizes.halve(f"{type(e).__name__}: {e}")
            work.log("oom_backoff", shard=index, batch_size=worker.batch_size)
