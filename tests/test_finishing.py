"""execution/finishing.py: batches finished beside generation, one at a time, in order; on a CPU build by a
low-priority thread, with the generating thread finishing a batch that thread has not started."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from synthvlm_builder.execution.finishing import LOW_PRIORITY, Finisher


def recorder(log: list, slow: float = 0.0, fail: int | None = None):
    def finish(job: int) -> int:
        running = [entry for entry in log if entry[2] is None]
        assert not running, f"batch {job} started while {running} is being finished"
        entry = [job, threading.current_thread().name, None]
        log.append(entry)
        if threading.current_thread().name == "finish":
            time.sleep(slow)
        if job == fail:
            entry[2] = "failed"
            raise ValueError(f"batch {job} failed")
        entry[2] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if sys.platform == "linux" else 0
        return job * 10
    return finish


@pytest.mark.parametrize("low_priority", [True, False])
def test_results_in_order_each_batch_once(low_priority):
    log: list = []
    collected = []
    with Finisher(recorder(log, slow=0.01), low_priority=low_priority) as f:
        for job in range(12):
            collected += f.submit(job)
            assert len(collected) >= job - 1  # at most two in flight
        collected += f.drain()
    assert collected == [job * 10 for job in range(12)]
    assert [entry[0] for entry in log] == list(range(12))  # finished in submission order, one at a time


def test_a_batch_the_low_priority_thread_has_not_started_is_finished_by_the_caller():
    """The background thread is kept off the lock (as a thread starved by other processes is): the
    generating thread finishes the oldest batch itself rather than wait; an accelerator build waits."""
    for low_priority, expected in ((True, "MainThread"), (False, "finish")):
        log: list = []
        with Finisher(recorder(log), low_priority=low_priority) as f:
            with f._cv:  # noqa: SLF001  (a re-entrant lock: this thread may still submit)
                collected = f.submit(0) + f.submit(1) + f.submit(2)
            collected += f.drain()
        assert collected == [0, 10, 20]
        assert log[0][:2] == [0, expected], log


@pytest.mark.skipif(sys.platform != "linux", reason="one thread's priority is set on Linux only")
def test_the_cpu_finishing_thread_alone_runs_at_low_priority():
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for low_priority, nice in ((True, LOW_PRIORITY), (False, before)):
        log: list = []
        with Finisher(recorder(log), low_priority=low_priority) as f:
            f.submit(0)
            deadline = time.monotonic() + 10
            while not log and time.monotonic() < deadline:  # the thread takes it up (else drain would do it here)
                time.sleep(0.01)
            f.drain()
        assert log == [[0, "finish", nice]]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == before


def test_a_failed_batch_raises_where_it_is_collected_and_nothing_after_it_runs():
    log: list = []
    with pytest.raises(ValueError, match="batch 1 failed"):
        with Finisher(recorder(log, fail=1), low_priority=True) as f:
            for job in range(6):
                f.submit(job)
            f.drain()
    assert [entry[0] for entry in log] == [0, 1]
    assert log[1][2] == "failed"
