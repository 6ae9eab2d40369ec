"""Smoke runs of the benchmarks: each script runs end to end in its smallest mode and ends with its
RESULT line. These are not benchmarks and check no target: only that the scripts run and report the shape of
output their RESULTS.md figures come from (timings on a shared CI machine are not assertions; the figures
are measured by hand and live in benchmarks/RESULTS.md).

All of them run in ONE fresh interpreter (tests/benchrunner.py), one after another, each as
`python benchmarks/NAME.py FLAGS` runs it: the interpreter start and the imports of torch, diffusers and
open_clip (5-8 s a process on a busy 2-core machine) are paid once instead of once per benchmark; the
children the benchmarks measure (builds, near-duplicate searches) are fresh processes as always.
"""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

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
    "scale": (["--captions", "1000", "--small", "100", "--small-rss-only"], "scale_rss_ratio", "1.15"),
    "data_value": (["--captions", "8", "--k", "2", "--seeds", "2", "--steps", "3", "--batch-size", "8",
                    "--eval-size", "12", "--gen-batch-size", "16"], "proxy_separation", "1"),
}
ZERO_OK = {"quality"}  # 6 captions may leave no headroom to capture: 0 is a valid value there
ANY_SIGN = {"data_value"}  # 3 training steps rank the datasets by chance: any finite separation is valid
RESULT = re.compile(r"^RESULT (\S+) (\S+) target (\S+)$")


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Every benchmark of SMALLEST run once by tests/benchrunner.py: {name: (exit code, stdout, stderr, cwd)}."""
    root = tmp_path_factory.mktemp("bench")
    specs = []
    for name, (flags, _, _) in sorted(SMALLEST.items()):
        (root / name).mkdir()
        specs.append({"name": name, "argv": flags, "cwd": str(root / name), "stdout": str(root / f"{name}.out"),
                      "stderr": str(root / f"{name}.err")})
    (root / "specs.json").write_text(json.dumps(specs))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "benchrunner.py"), str(root / "specs.json"),
                           str(root / "codes.json")], capture_output=True, text=True, cwd=root, timeout=1500)
    codes = json.loads((root / "codes.json").read_text()) if (root / "codes.json").exists() else {}
    return {s["name"]: (codes.get(s["name"], f"not run: the runner exited {proc.returncode}: {proc.stderr[-2000:]}"),
                        Path(s["stdout"]).read_text() if Path(s["stdout"]).exists() else "",
                        Path(s["stderr"]).read_text() if Path(s["stderr"]).exists() else "", Path(s["cwd"]))
            for s in specs}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_smoke_run_ends_with_the_result_line(name, smoke_runs):
    flags, metric, target = SMALLEST[name]
    code, stdout, stderr, cwd = smoke_runs[name]
    assert code == 0, f"exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    lines = stdout.strip().splitlines()
    match = RESULT.match(lines[-1])
    assert match, f"last line is not a RESULT line: {lines[-1]!r}"
    got_metric, value, got_target = match.groups()
    assert (got_metric, got_target) == (metric, target)
    assert math.isfinite(float(value)) and (float(value) > 0 or (name in ZERO_OK and float(value) == 0)
                                            or name in ANY_SIGN)
    assert list(cwd.iterdir()) == [], "benchmarks write only under their own temp dir"
