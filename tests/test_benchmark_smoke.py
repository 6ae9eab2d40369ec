"""Smoke runs of the benchmarks: each script runs end to end in its smallest mode and ends with its
RESULT line. These are not benchmarks and check no target: only that the scripts run and report the shape of
output their RESULTS.md figures come from (timings on a shared CI machine are not assertions; the figures
are measured by hand and live in benchmarks/RESULTS.md).
"""
import math
import re
import subprocess
import sys

import pytest

from buildutil import ROOT

SMALLEST = {
    "overhead": (["--captions", "8", "--repeats", "1", "--no-warmup", "--resolution", "64", "--steps", "1"],
                 "overhead_ratio", "1.10"),
    "batching": (["--captions", "4", "--batch-sizes", "1", "2", "--resolution", "64", "--steps", "1",
                  "--repeats", "1"], "batching_speedup_bs2", "1.5"),
    "scoring": (["--images", "4", "--batch-size", "2", "--resolution", "64", "--steps", "1", "--repeats", "1"],
                "scoring_headroom", "20"),
    "gpu_throughput": (["--tiny", "--device", "cpu", "--batch-sizes", "2"], "gpu_overhead_ratio", "1.03"),
    "memory": (["--sizes", "4", "12", "--steps", "1"], "memory_ratio", "1.15"),
    "near_dup": (["--sizes", "500", "2000"], "near_dup_phash_memory_ratio", "1.15"),
    "quality": (["--captions", "6", "--k", "2"], "selection_headroom_captured", "0.5"),
    "adaptive": (["--captions", "3"], "adaptive_generation_fraction", "0.6"),
    "scale": (["--captions", "1000", "--small", "100"], "scale_rss_ratio", "1.15"),
    "data_value": (["--captions", "8", "--k", "2", "--seeds", "2", "--steps", "3", "--batch-size", "8",
                    "--eval-size", "12", "--gen-batch-size", "16"], "proxy_separation", "1"),
}
ZERO_OK = {"quality"}  # 6 captions may leave no headroom to capture: 0 is a valid value there
ANY_SIGN = {"data_value"}  # 3 training steps rank the datasets by chance: any finite separation is valid
RESULT = re.compile(r"^RESULT (\S+) (\S+) target (\S+)$")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_smoke_run_ends_with_the_result_line(name, tmp_path):
    flags, metric, target = SMALLEST[name]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *flags], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    match = RESULT.match(lines[-1])
    assert match, f"last line is not a RESULT line: {lines[-1]!r}"
    got_metric, value, got_target = match.groups()
    assert (got_metric, got_target) == (metric, target)
    assert math.isfinite(float(value)) and (float(value) > 0 or (name in ZERO_OK and float(value) == 0)
                                            or name in ANY_SIGN)
    assert list(tmp_path.iterdir()) == [], "benchmarks write only under their own temp dir"
