"""One shard, start to finish: generate -> encode -> score the decoded bytes -> write candidates.

The same ShardWorker runs under every executor (in-process for `local`, inside a
Ray actor for `ray`), so batches are always formed the same way: within a shard,
in plan order, `generate.batch_size` at a time. That is what makes outputs
bit-identical across executors (batch composition changes the low bits of pixels).

While the denoiser works on batch n+1, a background thread scores, encodes and
writes batch n; at most two batches are in flight, so memory stays flat.

Fault injection (README "Reliability"): with SYNTHVLM_TEST_SIGNAL=SIG@N (e.g. KILL@2 or INT@1)
the process sends itself signal SIG once shard N has written its first batch to its temp file,
that is with shards before N finished and shard N half written: a deterministic kill point.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
import pyarrow.parquet as pq

from .. import reporter
from ..recipe.config import Caption, Recipe
from ..settings import setting
from ..state import STAGES
from ..stages.format import decode_image, encode_image
from ..stages.rows import ROUND_BATCH, candidate_schema
from .plan import derive_seed, sample_id
from .ledger import GENERATED
from .rounds import Rounds, histogram
from .workdir import WorkDir


@dataclass(frozen=True)
class Published:
    """A batch as the dataset holds it: the encoded bytes, the generated pixels (CPU), and the decoded
    published pixels, on the CPU and on the scoring device (for PNG the same as the generated ones)."""
    encoded: list
    raw: np.ndarray
    images: np.ndarray
    pixels: torch.Tensor


@dataclass(frozen=True)
class Item:
    caption: Caption
    k: int
    seed: int

    @property
    def id(self) -> str:
        return sample_id(self.caption.id, self.k)


def shard_items(recipe: Recipe, captions: list[Caption]) -> list[Item]:
    """Candidates of a shard in plan order: caption by caption, k = 0..images_per_caption-1."""
    ipc = recipe.generate.max_candidates
    return [Item(c, k, derive_seed(recipe.seed, c.id, k)) for c in captions for k in range(ipc)]


def batches(items: list, batch_size: int) -> list[list]:
    """A shard's batches: consecutive items in plan order, `batch_size` at a time (the last may be
    shorter). The build (every executor) and `verify` form them here, so they cannot disagree."""
    return [items[start:start + batch_size] for start in range(0, len(items), batch_size)]


def cpu_threads() -> int:
    """Cores this process may use (cgroup/affinity aware), the same in every executor on a machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def quiet_library_progress() -> None:
    """Our own bars show progress; the libraries' per-component loading bars are noise."""
    import diffusers
    import transformers
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


class ShardWorker:
    """Holds the diffusion pipeline and the scorer; processes shards one after another."""

    def __init__(self, recipe: Recipe, device: str = "auto", *, pipe=None, clip_bundle=None):
        """`pipe` / `clip_bundle`: already-loaded models to use instead of the recipe's (the GPU
        benchmark builds random-weight SDXL-size models in memory); by default both are loaded."""
        from ..models.loading import resolve_device
        from ..registry import registry
        from ..stages.scoring import BatchScorer

        quiet_library_progress()
        g = recipe.generate
        self.recipe = recipe
        self.device = resolve_device(device)
        if pipe is None:  # loading takes seconds to minutes (a Hub SDXL): say so before it starts
            reporter.info(f"loading {g.model} and the scoring models on {self.device}")
        if self.device.type == "cpu":
            # CPU kernels round differently with different thread counts, and Ray gives its
            # workers one thread: pin the count so every executor computes the same bits.
            torch.set_num_threads(cpu_threads())
        self.generator = registry().get("generator", g.backend).load(g, self.device, pipe)
        self.scorer = BatchScorer(recipe, self.device, clip_bundle)
        # The runner sets the measured size for `auto` (execution/batching.py) before the first shard.
        self.batch_size = g.batch_size if isinstance(g.batch_size, int) else 1
        self.schema = candidate_schema(recipe)
        # CPU-side work (SSIM, encoding) can fan out when the denoiser is not on the CPU.
        self.cpu_threads = 1 if self.device.type == "cpu" else min(8, os.cpu_count() or 1)
        self._signal_at = _test_signal()

    def run(self, index: int, captions: list[Caption], work: WorkDir, on_images=None, on_written=None) -> dict:
        """`on_images(n)`: n more images generated; `on_written(n)`: n more scored and written (called from
        the thread that finishes batches)."""
        recipe, bs = self.recipe, self.batch_size
        g = recipe.generate
        seconds = dict.fromkeys(STAGES, 0.0)
        largest = [0]  # the largest encoded image: bounds the dataset's row groups by bytes
        started = time.perf_counter()
        in_flight: deque = deque()
        rounds = Rounds(len(captions), g.max_candidates, g.until.min_score if g.adaptive else None)
        made, attempt, parts_before = 0, uuid.uuid4().hex[:16], dict(self.scorer.seconds)
        with work.shard_writer(index) as tmp:
            compression = {c: "NONE" if c == "image" else "SNAPPY" for c in self.schema.names}
            with pq.ParquetWriter(tmp, self.schema, compression=compression) as writer, \
                    ThreadPoolExecutor(1, thread_name_prefix="finish") as finish, \
                    ThreadPoolExecutor(self.cpu_threads, thread_name_prefix="cpu") as cpu:
                for k, positions, items in self._rounds(captions, rounds):
                    scored = []
                    for batch, members in zip(batches(items, bs), batches(positions, bs)):
                        t0 = time.perf_counter()
                        pixels = self.generate(batch)
                        dt = time.perf_counter() - t0
                        seconds["generate"] += dt
                        # the cost ledger (execution/ledger.py) counts what a killed attempt generated from these
                        work.log(GENERATED, shard=index, attempt=attempt, images=len(batch), seconds=round(dt, 4))
                        while len(in_flight) >= 2:  # bounded: the generator runs at most one batch ahead
                            scored.append(in_flight.popleft().result())
                        extra = {ROUND_BATCH.name: [members] * len(batch)} if g.adaptive else {}
                        in_flight.append(finish.submit(self._finish_batch, index, batch, pixels, writer, cpu,
                                                       seconds, largest, extra, on_written))
                        made += len(batch)
                        if on_images:
                            on_images(len(batch))
                    if g.adaptive:  # the next round depends on this one's scores
                        while in_flight:
                            scored.append(in_flight.popleft().result())
                        rounds.record(positions, np.concatenate(scored) if scored else [])
                while in_flight:
                    in_flight.popleft().result()
        extra = {"candidates_per_caption": histogram(rounds.taken)} if g.adaptive else {}
        extra["ledger"] = {"attempt": attempt, "parts": {
            name: round(s - parts_before.get(name, 0.0), 3) for name, s in self.scorer.seconds.items()}}
        return work.mark_done(index, rows=made, extra={
            "captions": len(captions), "seconds": round(time.perf_counter() - started, 3),
            "stage_seconds": {k: round(v, 3) for k, v in seconds.items()}, "max_image_bytes": largest[0],
            "batch_size": bs, **extra, **self.where()})

    def _rounds(self, captions: list[Caption], rounds: Rounds):
        """(k, shard positions, items) per round. Fixed k: one round of the whole shard in plan order
        (shard_items), as always; adaptive: round k's captions (execution/rounds.py), candidate k each."""
        g = self.recipe.generate
        if not g.adaptive:
            ipc = g.max_candidates
            items = shard_items(self.recipe, captions)
            yield 0, [i // ipc for i in range(len(items))], items
            return
        for k in range(g.max_candidates):
            positions = rounds.active(k)
            if not positions:
                return
            yield k, positions, [Item(captions[i], k, derive_seed(self.recipe.seed, captions[i].id, k))
                                 for i in positions]

    def where(self) -> dict:
        """What changes the low bits of pixels besides the recipe (README "Reproducibility"): the device
        type and, on the CPU, the thread count. Each shard's marker records it; the lock and `verify` read it."""
        return {"device_type": self.device.type,
                "cpu_threads": torch.get_num_threads() if self.device.type == "cpu" else None}

    def generate(self, batch: list[Item]) -> torch.Tensor:
        """uint8 images (N, H, W, 3) of one batch, in one pipeline call, left on the device."""
        return self.generator.generate_tensor([it.caption.text for it in batch], [it.seed for it in batch])

    def publish(self, pixels: torch.Tensor, cpu=None) -> Published:
        """Encode a batch as the dataset stores it, and decode it as consumers will (scores describe
        the published bytes). `cpu`: a thread pool for the encoders."""
        fmt, pool_map = self.recipe.format, (cpu.map if cpu is not None else map)
        raw = pixels.cpu().numpy()  # the one copy of the generated images that leaves the device
        encoded = list(pool_map(lambda im: encode_image(im, fmt.image_format, fmt.quality), raw))
        if fmt.image_format == "png":  # lossless: the published pixels are the generated ones, still on the device
            return Published(encoded, raw, raw, pixels)
        decoded = np.stack(list(pool_map(decode_image, encoded)))
        return Published(encoded, raw, decoded, torch.from_numpy(decoded))

    def scores(self, batch: list[Item], published: Published) -> dict:
        """Every score column of one batch (stages/scoring.py): what the build stores, preview shows and
        verify compares."""
        return self.scorer.score(published.pixels, [it.caption.text for it in batch], host=published.images)

    def _finish_batch(self, index: int, batch: list[Item], pixels, writer, cpu, seconds: dict,
                      largest: list, extra: dict, on_written=None) -> np.ndarray:
        """Encode, score and write one batch; returns its combined scores (adaptive rounds read them)."""
        t0 = time.perf_counter()
        published = self.publish(pixels, cpu)
        largest[0] = max([largest[0], *map(len, published.encoded)])
        t1 = time.perf_counter()
        scores = self.scores(batch, published)
        t2 = time.perf_counter()
        h, w = published.raw.shape[1:3]
        n = len(batch)
        columns = {
            "id": [it.id for it in batch], "caption_id": [it.caption.id for it in batch],
            "k": [it.k for it in batch], "caption": [it.caption.text for it in batch],
            "source": [it.caption.source for it in batch], "seed": [it.seed for it in batch],
            "image": published.encoded, "width": [w] * n, "height": [h] * n, **scores, **extra,
        }
        writer.write_table(pa.table({name: columns[name] for name in self.schema.names}, schema=self.schema))
        t3 = time.perf_counter()
        for stage, dt in zip(("encode", "score", "write"), (t1 - t0, t2 - t1, t3 - t2)):
            seconds[stage] += dt
        if on_written:
            on_written(n)
        if self._signal_at and self._signal_at[1] == index:
            os.kill(os.getpid(), self._signal_at[0])
        return np.asarray(scores["score"])


def _test_signal() -> tuple[int, int] | None:
    """SYNTHVLM_TEST_SIGNAL=SIG@N parsed as (signal number, shard index); see the module docstring."""
    spec = setting("SYNTHVLM_TEST_SIGNAL")
    if not spec:
        return None
    name, _, shard = spec.partition("@")
    if not shard.isdigit():  # another kill point (release/stream.py: SIG@upload:N)
        return None
    return int(getattr(signal, f"SIG{name.upper()}")), int(shard)


def scratch_shard(worker: ShardWorker, captions: list[Caption], on_images=None) -> tuple[dict, pa.Table]:
    """`captions` made exactly as a build makes a shard of them (ShardWorker.run: its batches, adaptive
    best-of-k's rounds, every score), in a scratch work dir that is removed after: the shard's marker and
    its candidates (candidate_schema) in plan order, caption by caption and k = 0, 1, ... (`preview`,
    `compare`'s recipe sides and `plan --measure` run the recipe this way)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="synthvlm-scratch-") as d:
        work = WorkDir(Path(d))
        work.prepare({"scratch": True})
        marker = worker.run(0, captions, work, on_images=on_images)
        table = pq.read_table(work.shard_path(0), schema=worker.schema)
    position = {c.id: i for i, c in enumerate(captions)}
    order = sorted(range(table.num_rows), key=lambda r: (position[table["caption_id"][r].as_py()],
                                                          table["k"][r].as_py()))
    return marker, table.take(order)
