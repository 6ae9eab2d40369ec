"""Near-duplicate search at scale: throughput and peak memory at two sizes, side by side in one run.

    python benchmarks/near_dup.py                      # 10,000 vs 200,000 candidates
    python benchmarks/near_dup.py --sizes 500 2000     # smallest mode (the tests)

Each size runs in a fresh process (its own peak RSS, from the kernel via os.wait4), on synthetic
candidates shaped like a build's selection columns: random 64-bit pHashes with 1% planted near
copies (1-3 flipped bits), and, separately, random normalised 512-d CLIP embeddings (stored float16,
as the candidate shards hold them) with 1% planted copies at cosine > 0.99. Each process imports
torch first, as a build's selection does, so the ratio compares like with like.

Lines: `size mode seconds candidates/s peak_MiB found/planted`; last line:
RESULT near_dup_phash_memory_ratio <peak(large) / peak(small), pHash> target 1.15
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

TARGET = 1.15
CHILD = r"""
import json, sys, time
import numpy as np
import torch  # noqa: F401  (a build's selection runs in a process that has loaded torch)
from synthvlm_builder.stages import neardup
n, mode = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
planted = n // 100
score = rng.random(n).astype(np.float32)
ids = np.array([f"c:{i}-0" for i in range(n)])
t0 = time.perf_counter()
if mode == "phash":
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    for k in range(planted):
        j = n - 1 - k
        codes[j] = codes[k]
        for bit in rng.choice(64, 1 + k % 3, replace=False):
            codes[j, bit // 8] ^= np.uint8(1 << (bit % 8))
    t0 = time.perf_counter()
    pairs = neardup.phash_pairs(codes, 4)
else:
    emb = rng.normal(size=(n, 512)).astype(np.float32)
    emb[n - planted:] = emb[:planted][::-1] + rng.normal(scale=0.05, size=(planted, 512)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb.astype(np.float16).astype(np.float32)  # as read back from the shards
    t0 = time.perf_counter()
    pairs = neardup.embedding_pairs(emb, 0.95)
keep, groups = neardup.keep_one_per_group(n, pairs, score, ids)
print(json.dumps({"seconds": time.perf_counter() - t0, "groups": groups, "planted": planted}))
"""


def run(n: int, mode: str) -> dict:
    """One size in a fresh process: its result and its own peak RSS (MiB)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(n), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    out = proc.stdout.read()  # drains the pipe until the child exits
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{mode} at {n} failed with exit {proc.returncode}")
    return {**json.loads(out.decode().strip().splitlines()[-1]), "peak_mib": usage.ru_maxrss / 1024}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs=2, default=[10_000, 200_000])
    args = p.parse_args(argv)
    peaks = {}
    print("size mode seconds candidates/s peak_MiB found/planted")
    for mode in ("phash", "clip"):
        for n in args.sizes:
            r = run(n, mode)
            peak_mib = peaks[(mode, n)] = r["peak_mib"]
            print(f"{n} {mode} {r['seconds']:.2f} {n / max(r['seconds'], 1e-9):,.0f} {peak_mib:.0f}"
                  f" {r['groups']}/{r['planted']}")
    small, large = args.sizes
    print(f"clip embeddings: peak ratio {peaks[('clip', large)] / peaks[('clip', small)]:.2f} "
          f"(the float32 vectors faiss holds: {4 * 512 / 1024:.0f} KiB per candidate)")
    print(f"RESULT near_dup_phash_memory_ratio {peaks[('phash', large)] / peaks[('phash', small)]:.3f} target {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
