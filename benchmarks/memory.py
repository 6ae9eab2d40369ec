"""Memory: peak RSS of a build must not grow with the number of captions.

    python benchmarks/memory.py                          # 200 vs 2,000 captions, tiny SD, 64 px
    python benchmarks/memory.py --sizes 8 32 --steps 1   # smallest mode (the tests)

Each build is a fresh `python -m synthvlm_builder RECIPE --output DIR` (every candidate kept, so
the final write handles every image; 1,000 captions per shard, batch 8). Its peak RSS is the
kernel's own figure for that one child (`os.wait4` -> ru_maxrss). A sampler (psutil, every
20 ms) follows RSS during the build and attributes the peak to the build's phases using its
events.jsonl timestamps: start-up + model load, the shard loop, and selection + the final
`datasets` write + card, so a ratio above 1 says where memory grows.

Last line: RESULT memory_ratio <peak(large) / peak(small)> target 1.15
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1.15


def sample_rss(pid: int, samples: list, stop: threading.Event, every: float = 0.02) -> None:
    try:
        import psutil
        proc = psutil.Process(pid)
        while not stop.is_set():
            samples.append((time.time(), proc.memory_info().rss))
            stop.wait(every)
    except Exception:  # psutil missing or the process is gone: the kernel's peak still stands
        return


def build_peak(recipe_path: Path, out: Path) -> dict:
    """Peak RSS (MiB) of one build process, plus the sampled peak of each of its phases."""
    proc = subprocess.Popen(C.build_cmd(recipe_path, out), env=C.child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(proc.pid, samples, stop), daemon=True)
    sampler.start()
    stderr = proc.stderr.read()  # drains the pipe until the child exits
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (RUSAGE_CHILDREN would be a max)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"build failed ({proc.returncode}):\n{stderr.decode(errors='replace')[-4000:]}")
    events = [json.loads(ln) for ln in C.events_path(out).read_text().splitlines()]
    shards = [e for e in events if e["event"] == "shard_done"]
    loop_start = shards[0]["t"] - shards[0]["seconds"]
    bounds = [("start-up + load", 0.0), ("shard loop", loop_start), ("select + write + card", shards[-1]["t"])]
    phases = {}
    for (name, lo), hi in zip(bounds, [b for _, b in bounds[1:]] + [float("inf")]):
        in_phase = [rss for t, rss in samples if lo <= t < hi]
        phases[name] = max(in_phase) / 2**20 if in_phase else float("nan")
    return {"peak_mib": usage.ru_maxrss / 1024, "phases": phases, "samples": len(samples)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=(200, 2000), metavar=("SMALL", "LARGE"),
                    help="captions in the two builds (default 200 2000)")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    with C.bench_tmpdir("memory") as tmp:
        C.model_source("builtin:tiny-sd"), C.model_source("builtin:tiny-clip")  # built once, outside the builds
        C.header("memory")
        peaks = {}
        for n in args.sizes:
            recipe = C.write_recipe(tmp / f"r{n}", n, res=args.resolution, steps=args.steps,
                                    batch_size=args.batch_size)
            t0 = time.perf_counter()
            m = build_peak(recipe, tmp / f"out{n}")
            peaks[n] = m["peak_mib"]
            phases = ", ".join(f"{k} {v:.0f}" for k, v in m["phases"].items())
            print(f"{n:>6} captions: peak RSS {m['peak_mib']:.0f} MiB in {time.perf_counter() - t0:.1f} s "
                  f"(sampled peak by phase, MiB: {phases}; {m['samples']} samples)  load {C.load_average()}",
                  flush=True)
    small, large = args.sizes
    C.result("memory_ratio", peaks[large] / peaks[small], f"{TARGET:.2f}")


if __name__ == "__main__":
    main()
