"""Finishing a shard's batches (encode, score, write) beside generation, one at a time, in generation order.

A background thread finishes batch n while the generator makes batch n+1; at most `depth` batches are
in flight, so memory stays flat. What differs by device (execution/worker.py decides):

- Accelerator: the denoiser does not use the CPU, so the finishing thread runs at normal priority and the
  generating thread waits for it when the backlog is full (as it always has).
- CPU: the denoiser's own threads use the cores. A finishing thread at the same priority takes a core in the
  middle of one of the denoiser's parallel regions, and the region waits for its slowest thread; so here the
  finishing thread runs at the lowest priority (Linux: nice 19, for that thread and the threads it starts,
  never the process's other threads) and uses what the denoiser leaves idle (a plain diffusers loop of a
  small model keeps two cores about 70% busy: benchmarks/overhead.py prints both sides' CPU seconds). When
  the backlog is full and the thread has not started the oldest batch (starved by other processes' load),
  the generating thread finishes that batch itself instead of waiting, so a low priority never stalls a build.

Exactly one batch is being finished at any time, by one thread or the other, in submission order: the
writes stay in order, the finishing code needs no locks, and the pixels, scores and bytes written do not
depend on which thread finished a batch (both run torch with the same thread count).
"""
from __future__ import annotations

import os
import sys
import threading
from collections import deque
from typing import Any, Callable

LOW_PRIORITY = 19  # the finishing thread's nice value on a CPU build


def lower_thread_priority() -> None:
    """The calling thread (and threads it starts later) at LOW_PRIORITY, where the OS sets one thread's
    priority (Linux); elsewhere nothing changes."""
    if sys.platform.startswith("linux") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY)
        except OSError:  # a sandbox that forbids it: normal priority still works, only slower
            pass


class Finisher:
    """`submit(job)` queues a batch for `finish(job)` (encode, score, write; returns what the caller
    collects); `submit` and `drain` return finished batches' results in submission order, blocking only to
    keep the backlog at `depth` (or, for `drain`, until none is left). Use as a context manager."""

    def __init__(self, finish: Callable[[Any], Any], *, low_priority: bool, depth: int = 2):
        self._finish, self._depth, self._steal = finish, depth, low_priority
        self._cv = threading.Condition()
        self._pending: deque = deque()  # (seq, job) not started
        self._results: dict[int, tuple[bool, Any]] = {}
        self._busy = self._closed = self._failed = False
        self._submitted = self._collected = 0
        self._thread = threading.Thread(target=self._loop, args=(low_priority,), name="finish", daemon=True)
        self._thread.start()

    def __enter__(self) -> "Finisher":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._cv:
            if exc_type is not None:
                self._pending.clear()  # not started: never started now
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def submit(self, job: Any) -> list:
        """Queue one batch; the results of the batches collected to keep the backlog at `depth`."""
        collected = []
        while self._submitted - self._collected >= self._depth:
            collected.append(self._collect())
        with self._cv:
            self._pending.append((self._submitted, job))
            self._submitted += 1
            self._cv.notify_all()
        return collected

    def drain(self) -> list:
        """Every batch still in flight, finished; their results, oldest first."""
        return [self._collect() for _ in range(self._submitted - self._collected)]

    def _run(self, seq: int, job: Any) -> None:
        try:
            outcome = (True, self._finish(job))
        except BaseException as e:  # handed to the collecting thread, which raises it
            outcome = (False, e)
        with self._cv:
            self._results[seq] = outcome
            self._busy = False
            self._failed |= not outcome[0]
            self._cv.notify_all()

    def _loop(self, low_priority: bool) -> None:
        if low_priority:
            lower_thread_priority()
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or (self._pending and not self._busy and not self._failed))
                if not self._pending or self._failed:
                    return
                seq, job = self._pending.popleft()
                self._busy = True
            self._run(seq, job)

    def _collect(self) -> Any:
        seq, job = self._collected, None
        with self._cv:
            if (self._steal and not self._busy and not self._failed and self._pending
                    and self._pending[0][0] == seq):  # the low-priority thread has not started it: do it here
                job = self._pending.popleft()[1]
                self._busy = True
        if job is not None:
            self._run(seq, job)
        with self._cv:
            self._cv.wait_for(lambda: seq in self._results or (self._failed and not self._busy))
            ok, value = self._results.pop(seq, (False, RuntimeError("an earlier batch failed")))
        self._collected += 1
        if not ok:
            raise value
        return value
