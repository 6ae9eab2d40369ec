"""A rehearsal at the mission's scale: `python benchmarks/scale.py` (about 45 minutes on 2 CPU cores).

The shape of the paper's recipe (recipes/llava_100k.yaml): 558,128 captions (shapes-world captions, as
many as LLaVA-558K holds) through the paper's caption filters (preset synthvlm, the quickstart's
overrides for the world's short captions), shards of 1,000 captions (559 of them), best per caption,
select 100,000, PNG. The generator is the shapes_world backend (stages/generators/shapes_world.py: the
caption's scene rendered with seeded errors, no model), so generation costs ~1 ms an image; every other
stage runs for real on every caption: curation, CLIPScore with builtin:shapes-clip + 0.5 SSIM, encoding,
the candidate shards, selection, the Parquet write, the card and its plots, stats and the lock.

Each scale is built by a fresh `python -m synthvlm_builder` killed with SIGKILL in the middle (once shard
N/2 has written its first batch: SYNTHVLM_TEST_SIGNAL=KILL@N/2, README "Reliability"), then resumed to
the end by a second process. Printed: the wall time of each stage (from the build's events log and
stats.json), the peak RSS of each process against a build ten times smaller, candidate disk use against
`plan`'s estimate, the files written, and that the resumed build is whole (rows, `verify`).

    python benchmarks/scale.py --captions 5581 --small 558   # the 1/100 version (tests/test_benchmark_smoke.py
                                                              # runs an even smaller one, --small-rss-only)
RESULT line: `scale_rss_ratio X target 1.15` after `scale_disk_vs_plan` (within 20%).
"""
from __future__ import annotations

import _common as C  # noqa: F401  (offline environment, OMP policy, repo on sys.path)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

LLAVA_558K = 558_128
RECIPE = """\
name: scale-rehearsal
version: 0.1.0
license: cc-by-4.0
seed: 0
captions:
  sources:
    - type: jsonl
      path: caps.jsonl
      name: world
      id_column: id
      limit: {limit}  # the whole file: plan's counts
  filters:
    preset: synthvlm
    special_char_ratio: {{min: 0.10, max: 0.42}}
    char_repetition: {{rep_len: 10, max: 0.25}}
    dedupe: none
generate:
  model: builtin:shapes-sd
  backend: shapes_world
  resolution: [32, 32]
  images_per_caption: 1
  batch_size: 500
  dtype: float32
score:
  clip:
    model: builtin:shapes-clip
    prefix: ""
  ssim:
    size: 16
    weight: 0.5
select:
  size: {size}
  per_caption: best
  allow_fewer: true
format:
  image_format: png
execution:
  shard_size: 1000
  device: cpu
"""


def write_captions(path: Path, n: int, seed: int = 0) -> None:
    """n world captions; about 1 in 50 is junk the paper's filters drop (as LLaVA's web captions hold)."""
    from synthvlm_builder.models.shapes import world
    rng = np.random.default_rng(seed)
    junk = ("Buy now!!! $$$ ### click here ###", "@@@@ #### !!!! ????", "a a a a a a a a a a a a a a a a")
    with open(path, "w") as f:
        for i in range(n):
            text = junk[i % 3] if rng.random() < 0.02 else world.caption(world.random_scene(rng), rng)
            f.write(json.dumps({"id": f"{i:07d}", "caption": text}) + "\n")


def run(recipe: Path, out: Path, kill_at: int | None) -> dict:
    """One build process (killed at shard `kill_at`, or to the end): its peak RSS, wall time and exit."""
    env = C.child_env()
    if kill_at is not None:
        env["SYNTHVLM_TEST_SIGNAL"] = f"KILL@{kill_at}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(C.build_cmd(recipe, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != (-signal.SIGKILL if kill_at is not None else 0):
        raise SystemExit(f"build exited {code}:\n{stderr.decode(errors='replace')[-4000:]}")
    return {"peak_mib": usage.ru_maxrss / 1024, "seconds": time.perf_counter() - t0, "exit": code,
            "stderr": stderr.decode(errors="replace")}


def stage_walls(out: Path) -> dict:
    """Wall seconds per stage of the resumed run, from its events log (and the shards' own timings)."""
    events = [json.loads(line) for line in C.events_path(out).read_text().splitlines() if line.strip()]
    starts = [i for i, e in enumerate(events) if e["event"] == "start"]
    run2 = events[starts[-1]:]
    done = [e for e in run2 if e["event"] == "shard_done"]
    first_gen = next(e for e in run2 if e["event"] == "generated")
    stats = json.loads((out / "stats.json").read_text())
    return {"start-up + curation + model load": round(first_gen["t"] - run2[0]["t"], 1),
            "shard loop (this run)": round(done[-1]["t"] - first_gen["t"], 1),
            "selection + write + card + install": round(next(e for e in run2 if e["event"] == "built")["t"]
                                                        - done[-1]["t"], 1),
            "shard stages, all runs (s)": stats["timing"]["stage_seconds"]}


def rehearse(root: Path, n: int, size: int, checks: bool = True) -> dict:
    """One scale: write the captions, plan, build killed then resumed, verify. Without `checks` (the smaller
    scale under --small-rss-only) no `plan` and no `verify` process: only the builds, whose peak RSS it is for."""
    d = root / f"n{n}"
    d.mkdir()
    t = time.perf_counter()
    write_captions(d / "caps.jsonl", n)
    (d / "r.yaml").write_text(RECIPE.format(size=size, limit=n))
    wrote = time.perf_counter() - t
    out = d / "out"
    plan = None
    if checks:
        plan = json.loads(subprocess.run([*C.build_cmd(d / "r.yaml", out)[:3], "plan", str(d / "r.yaml"), "--json"],
                                         env=C.child_env(), capture_output=True, text=True, check=True).stdout)
    captions = sum(1 for _ in open(d / "caps.jsonl"))
    n_shards = -(-captions // 1000)
    killed = run(d / "r.yaml", out, kill_at=n_shards // 2)
    resumed = run(d / "r.yaml", out, kill_at=None)
    stats = json.loads((out / "stats.json").read_text())
    markers = sorted((next((out / ".synthvlm" / "builds").glob("*")) / "shards").glob("*.done.json"))
    shard_bytes = sum(json.loads(m.read_text())["bytes"] for m in markers)
    kept = stats["captions"]["kept"]
    # plan counts the sources' captions
    estimate = plan["estimate"]["candidate_bytes"] * kept // captions if plan else None
    files = sum(1 for p in out.rglob("*") if p.is_file())
    verify = None
    if checks:
        verify = subprocess.run([*C.build_cmd(d / "r.yaml", out)[:3], "verify", str(out), "--sample", "4"],
                                env=C.child_env(), capture_output=True, text=True)
    return {"captions": captions, "kept": kept, "shards": len(markers), "rows": stats["rows"],
            "write_captions_s": round(wrote, 1),
            "killed_run": {"peak_mib": round(killed["peak_mib"]), "seconds": round(killed["seconds"], 1)},
            "resumed_run": {"peak_mib": round(resumed["peak_mib"]), "seconds": round(resumed["seconds"], 1),
                            "resumed": "resuming:" in resumed["stderr"]},
            "peak_mib": max(killed["peak_mib"], resumed["peak_mib"]),
            "stages": stage_walls(out), "ledger": stats["ledger"]["total"],
            "redone_images": stats["ledger"]["redone"]["images"],
            "candidate_bytes": shard_bytes, "plan_candidate_bytes": estimate,
            "disk_vs_plan": round(shard_bytes / estimate, 3) if estimate else None, "files_written": files,
            "verify_exit": verify.returncode if verify else None,
            "verify": verify.stdout.strip().splitlines()[-1:] if verify else None}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=LLAVA_558K)
    ap.add_argument("--small", type=int, default=None, help="the build ten times smaller (default captions/10)")
    ap.add_argument("--select", type=int, default=None, help="select.size (default captions * 100,000/558,128)")
    ap.add_argument("--small-rss-only", action="store_true",
                    help="smoke runs (the tests): no plan and no verify process for the smaller build, which then"
                         " gives only its peak RSS, all the RESULT lines use of it")
    args = ap.parse_args(argv)
    small = args.small or args.captions // 10
    select = args.select or max(1, round(args.captions * 100_000 / LLAVA_558K))
    C.header("scale")
    with C.bench_tmpdir("scale") as root:
        results = {}
        for n, size in ((small, max(1, select * small // args.captions)), (args.captions, select)):
            t = time.perf_counter()
            results[n] = rehearse(root, n, size, checks=not (args.small_rss_only and n == small))
            results[n]["total_wall_s"] = round(time.perf_counter() - t, 1)
            print(json.dumps({n: results[n]}, indent=2), flush=True)
    big, little = results[args.captions], results[small]
    ratio = big["peak_mib"] / little["peak_mib"]
    print(f"peak RSS {big['peak_mib']:.0f} MiB at {args.captions:,} captions vs {little['peak_mib']:.0f} MiB at"
          f" {small:,}; candidate disk {big['candidate_bytes'] / 2**20:.1f} MiB vs plan's"
          f" {big['plan_candidate_bytes'] / 2**20:.1f} MiB; {big['files_written']:,} files;"
          f" killed at shard {big['shards'] // 2} and resumed ({big['redone_images']:,} images redone),"
          f" verify exit {big['verify_exit']}")
    print(f"RESULT scale_disk_vs_plan {big['disk_vs_plan']:.3f} target 1.20")
    C.result("scale_rss_ratio", ratio, "1.15")


if __name__ == "__main__":
    main()
