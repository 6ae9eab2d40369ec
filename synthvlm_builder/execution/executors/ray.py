"""The Ray Data executor: pending shards flow through `map_batches` into a pool of
actors, each holding a ShardWorker (pipeline + scorer) on its own GPU.

Actors run exactly the local executor's ShardWorker and write the same shard
files and completion markers, so a build can be started on one executor and
resumed on the other, and both give the same bytes. With a local output dir the
actors write into it (on a cluster: storage every node can reach). With an
object-store output (execution/remote.py) nothing is shared but the store: each
actor copies the captions from it into a scratch folder of its own node, and
sends each shard, then its marker, to it (workdir.py `mirror`); the driver
copies the finished shards down. A node that dies takes only scratch with it:
Ray runs its shards again on another node (a shard without its marker in the
store never counts), and each shard is read once, by index, when the build is
assembled, so none is lost or counted twice.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ...errors import BuildError, InputError
from ...recipe import Recipe
from ..executor import Executor
from ..workdir import WorkDir


@dataclass(frozen=True)
class RayConfig:
    address: Optional[str] = None
    workers: int = 1
    num_gpus_per_worker: Optional[float] = None


class RayExecutor(Executor):
    name = "ray"
    summary = "Ray Data actors; pip install 'synthvlm-builder[ray]'"
    order = 20
    legacy = "null"
    Config = RayConfig
    schema = {"description": "Ray executor settings.",
              "type": "object",
              "additionalProperties": False,
              "properties": {
                  "address": {"description": "Ray cluster address (e.g. auto or ray://head:10001); default: start a"
                                             " local Ray instance.",
                              "type": "string", "minLength": 1},
                  "workers": {"description": "Number of generation actors.",
                              "type": "integer", "minimum": 1, "maximum": 4096, "default": 1},
                  "num_gpus_per_worker": {"description": "GPUs per actor; default 1 when the cluster has GPUs, else"
                                                         " 0.",
                                          "type": "number", "minimum": 0, "maximum": 16}},
              "default": {}}

    @classmethod
    def run(cls, ctx, pending: list[int], sizes, progress) -> None:
        if sizes.value is None:
            raise InputError("generate.batch_size", "auto is measured by the local executor (Ray actors would"
                             " each choose their own); start the build locally, or set a number")
        from ..plan import shard_ranges
        recipe = ctx.recipe
        recipe = dataclasses.replace(recipe, generate=dataclasses.replace(recipe.generate, batch_size=sizes.value))
        with progress() as bar:
            run_ray(recipe, ctx.work, shard_ranges(ctx.caption_meta["count"], recipe.execution.shard_size), pending,
                    ctx.device, bar, stop=ctx.enough)
        if ctx.work.mirror is not None:  # the actors sent them to the store: copied down to be assembled here
            ctx.work.fetch_shards(pending)
        missing = [i for i in pending if not ctx.work.check_shard(i).ok]
        if missing and ctx.enough():  # select.budget reached (execution/target.py): the rest is not needed
            ctx.work.sweep()  # what the actors stopped mid-shard had written
            missing = []
        if missing:
            raise BuildError(f"Ray returned without finishing shards {missing[:10]}; rerun the same command to"
                             " resume (finished shards are kept)")


class ShardActor:
    """One per Ray worker: loads the models once, then processes one shard per call."""

    def __init__(self, recipe: Recipe, work_dir: Optional[str], device: str, store: Optional[dict] = None):
        from ..worker import ShardWorker
        self.worker = ShardWorker(recipe, device)
        self.scratch = None
        if store is None:
            self.work = WorkDir(work_dir)
        else:  # the build's store: this node's disk holds only scratch copies
            import tempfile

            import ray

            from ...storage import reopen
            node = ray.get_runtime_context().get_node_id()  # named so a node's scratch can be told apart
            self.scratch = tempfile.mkdtemp(prefix=f"synthvlm-actor-{node[:16]}-")
            self.work = WorkDir(self.scratch, mirror=reopen(store["url"], store["options"]))
            self.work.captions.shard_size = recipe.execution.shard_size
            self.work.fetch_captions()

    def __del__(self):
        if getattr(self, "scratch", None):  # what this node kept was scratch: it goes with the actor
            import shutil
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __call__(self, batch: dict) -> dict:
        out = {"shard": [], "rows": [], "seconds": []}
        for index in batch["shard"]:
            # Captions come from the work dir (or the store's copy): the driver never holds them all.
            marker = self.worker.run(int(index), self.work.captions.shard(int(index)), self.work)
            if self.scratch is not None:
                self.work.forget_shard(int(index))
            out["shard"].append(int(index))
            out["rows"].append(marker["rows"])
            out["seconds"].append(marker["seconds"])
        return out


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BuildError("the ray executor needs Ray Data: pip install 'synthvlm-builder[ray]'") from None
    return ray


def run_ray(recipe: Recipe, work: WorkDir, shards: list, pending: list[int], device: str, bar, stop=None) -> None:
    """The pending shards through the actor pool; `stop()` true after a finished shard (select.budget's
    target reached by the finished prefix) ends the run there, the shards still in flight abandoned."""
    ray = _import_ray()
    from ray.data import ActorPoolStrategy, DataContext

    cfg = recipe.execution.ray
    started_here = not ray.is_initialized()
    if started_here:
        # No address: a local instance with every CPU and GPU of this machine.
        ray.init(address=cfg.address, include_dashboard=False, log_to_driver=True)
    try:
        gpus = cfg.num_gpus_per_worker
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        if gpus == 0 and device == "auto":
            device = "cpu"  # an actor without a GPU must not grab one it was not given
        DataContext.get_current().enable_progress_bars = False
        items = [{"shard": i} for i in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        store = None if work.mirror is None else {"url": work.mirror.url, "options": work.mirror.options}
        results = ds.map_batches(
            ShardActor, fn_constructor_kwargs={"recipe": recipe, "work_dir": None if store else str(work.root),
                                               "device": device,
                                               "store": store},
            batch_size=1, compute=ActorPoolStrategy(size=min(cfg.workers, len(items))), num_gpus=gpus,
        )
        rows = iter(results.iter_rows())  # streams: one row per finished shard
        try:
            for row in rows:
                i = int(row["shard"])
                bar.update(int(row["rows"]))  # the candidates it made (adaptive best-of-k: fewer than the bound)
                work.log("shard_done", shard=i, rows=int(row["rows"]), seconds=float(row["seconds"]), executor="ray")
                if stop is not None and stop():
                    work.log("target_reached", shard=i, executor="ray")
                    break
        finally:
            rows.close()  # ends the streaming execution (and its actors) when the loop stopped early
    finally:
        if started_here:
            _join_ray_data_threads()
            ray.shutdown()


def _join_ray_data_threads(timeout: float = 120.0) -> None:
    """Ray Data winds its executor down on background threads and gives them only 2 s; on a busy
    machine they outlive that, and one that touches Ray after `ray.shutdown()` makes Ray end the
    whole process with exit code 1 and no message (seen in CI). Wait for them first."""
    import threading
    for t in threading.enumerate():
        if t is not threading.current_thread() and t.name.startswith(("StreamingExecutor-",
                                                                      "ray-data-metadata-prefetch")):
            t.join(timeout)
