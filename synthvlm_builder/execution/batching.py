"""The batch size a build generates with: the recipe's, or measured (`generate.batch_size: auto`), and
halved on an out-of-memory error. It is part of bit-identity (batched matmuls round by batch size), so
the choice is recorded in the build's work folder (batch.json: a resumed build reuses it) and each
shard's completion marker records the size it was made with (verify regenerates with it).

Out-of-memory can be injected for tests (models/generator.py: SYNTHVLM_TEST_OOM_ABOVE).
"""
from __future__ import annotations

import json
import os
import time

import torch

from .. import reporter
from ..atomic import atomic_write
from ..errors import BuildError
from ..layout import BATCH
from ..state import StateError, load

CANDIDATES = (1, 2, 4, 8)
TIE = 0.02  # a larger batch must be at least 2% faster (images/s) to be preferred


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower() and isinstance(e, RuntimeError)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(worker, items: list) -> tuple[int, list[dict]]:
    """Time generation at each candidate batch size (a warm-up call, then a timed one) on the worker's
    device and model; return the fastest size (ties to the smaller) and the table."""
    table = []
    for size in CANDIDATES:
        batch = (items * size)[:size] if items else []
        try:
            worker.generate(batch)  # warm-up: kernels, allocator, compile
            _sync(worker.device)
            t0 = time.perf_counter()
            worker.generate(batch)
            _sync(worker.device)
            seconds = time.perf_counter() - t0
        except Exception as e:
            if not is_oom(e):
                raise
            table.append({"batch_size": size, "oom": True})
            break
        table.append({"batch_size": size, "images_per_second": round(size / seconds, 3)})
    rates = [r for r in table if "images_per_second" in r]
    if not rates:
        raise BuildError("generate.batch_size auto: even a batch of 1 runs out of memory on this device")
    best = max(r["images_per_second"] for r in rates)
    chosen = next(r["batch_size"] for r in rates if r["images_per_second"] >= best * (1 - TIE))
    return chosen, table


class BatchSize:
    """The build's current batch size, kept in DIR/.synthvlm/builds/KEY/batch.json."""

    def __init__(self, work_root, recipe_value):
        self.path = work_root / BATCH
        self.recipe_value = recipe_value
        self.state = self._read()

    def _read(self) -> dict | None:
        """The recorded choice (state.py "batch"); a damaged record is corrupt state, not a guess: the
        shards already made used it."""
        if not os.path.lexists(self.path):
            return None
        try:
            return load(self.path, "batch")
        except StateError as e:
            raise e.corrupt("delete it to choose the batch size again (each finished shard's marker keeps the"
                            " size it was made with)", "generate.batch_size") from None

    @property
    def value(self) -> int | None:
        return self.state["batch_size"] if self.state else (
            self.recipe_value if isinstance(self.recipe_value, int) else None)

    def record(self, size: int, how: str, **details) -> None:
        history = (self.state or {}).get("history", []) + [{"batch_size": size, "how": how, **details}]
        self.state = {"batch_size": size, "history": history}
        atomic_write(self.path, json.dumps(self.state, indent=1) + "\n")

    def resolve(self, worker, items: list) -> int:
        """The size to generate with: recorded, the recipe's, or measured now (auto)."""
        if self.value is not None:
            return self.value
        size, table = measure(worker, items)
        rates = ", ".join(f"{r['batch_size']}: " + ("out of memory" if r.get("oom") else
                                                   f"{r['images_per_second']:.2f} img/s") for r in table)
        reporter.info(f"generate.batch_size auto: {rates} -> batch {size}")
        self.record(size, "auto", measured=table, device=str(worker.device))
        return size

    def halve(self, reason: str) -> int:
        size = self.value or 1
        if size <= 1:
            raise BuildError(f"out of memory with a batch of 1 ({reason}); use a smaller resolution or model,"
                             " or a device with more memory")
        self.record(size // 2, "out of memory", error=reason[:200])
        reporter.info(f"out of memory with a batch of {size}: generating the rest of the build in batches of"
                      f" {size // 2}")
        return size // 2
