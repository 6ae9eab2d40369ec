"""Builder overhead: a full `synthvlm-build` against a plain diffusers loop over the same work.

    python benchmarks/overhead.py                           # 200 captions, 256 px, 4 steps, batch 8, 3 pairs
    python benchmarks/overhead.py --captions 8 --repeats 1 --no-warmup   # smallest mode (the tests)

Both sides get the same captions (curated by the builder from the benchmark recipe), the same
seeds (`plan.derive_seed`, as the builder derives them), builtin tiny SD, the same steps,
resolution, batch size, dtype and torch thread count:

  A  a fresh Python process that imports torch + diffusers, loads the pipeline
     (AutoPipelineForText2Image, as the builder does) and calls `pipe(prompt=[...],
     generator=[...], ...)` batch by batch, discarding the images;
  B  a fresh `python -m synthvlm_builder RECIPE --output DIR` (the console entry point) of a
     recipe that keeps every candidate: captions, model + CLIP load, generation, CLIPScore, SSIM,
     JPEG encoding, shard writing, selection, the `datasets` write, the card with its plots.

Each side is timed as a whole process, spawn to exit: a user pays the builder's imports and
model loads as well as its per-image work, and the raw side pays the same interpreter start,
torch/diffusers import and pipeline load, so the difference is exactly what the builder adds.
A and B alternate (A B, B A, A B, ...) so drifting machine load hits both; the result is the
median of the per-pair ratios B/A. With --compare-tree DIR, a third side C runs the builder from
another source tree (e.g. `git worktree add /tmp/before HEAD~1`) in the same rotation: a product
change is measured before/after side by side, under the same load. Each run's phases are printed too (B's from its own
events.jsonl and stats.json), which separates fixed costs from per-image ones.

Last line: RESULT overhead_ratio <median B/A> target 1.10
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment before anything else is imported)

TARGET = 1.10


def raw_child(job_file: str) -> None:
    """Side A, in its own process: imports, load, loop; prints its phase stamps."""
    stamps = {"started": time.time()}
    import torch  # noqa: F401  (timed as part of the imports)
    import diffusers  # noqa: F401
    job = json.loads(Path(job_file).read_text())
    torch.set_num_threads(job["threads"])  # what ShardWorker pins on CPU
    stamps["imported"] = time.time()
    pipe = C.load_raw_pipeline(job["source"], job["dtype"])
    stamps["loaded"] = time.time()
    C.raw_loop(pipe, job["kwargs"], job["prompts"], job["seeds"], job["batch_size"])
    stamps["generated"] = time.time()
    print(json.dumps(stamps))


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_a(job_file: Path) -> dict:
    spawn, cpu0 = time.time(), cpu_seconds()
    wall, out = C.run_timed([sys.executable, __file__, "--raw-child", str(job_file)])
    s = json.loads(out.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu_seconds() - cpu0, "phases": {
        "start+import": s["imported"] - spawn, "load": s["loaded"] - s["imported"],
        "generate": s["generated"] - s["loaded"], "exit": spawn + wall - s["generated"]}}


def run_b(recipe_path: Path, out: Path, tree: Path | None = None) -> dict:
    """Side B (or C: the same from `tree`, which `python -m` then imports the package from)."""
    spawn, cpu0 = time.time(), cpu_seconds()
    env = C.child_env(str(tree)) if tree else None
    wall, _ = C.run_timed(C.build_cmd(recipe_path, out), cwd=tree, env=env)
    events = [json.loads(ln) for ln in C.events_path(out).read_text().splitlines()]
    t = {e["event"]: e["t"] for e in events}  # last of each kind
    stats = json.loads((out / "stats.json").read_text())["timing"]
    shards = [e for e in events if e["event"] == "shard_done"]
    loop_start = shards[0]["t"] - shards[0]["seconds"]
    return {"wall": wall, "cpu": cpu_seconds() - cpu0, "stages": stats["stage_seconds"], "phases": {
        "start+import": t["start"] - spawn, "captions+load": loop_start - t["start"],
        "generate": shards[-1]["t"] - loop_start, "select+write+card": t["built"] - shards[-1]["t"],
        "exit": spawn + wall - t["built"]}}


def fmt(run: dict) -> str:
    phases = ", ".join(f"{k} {v:.2f}" for k, v in run["phases"].items())
    return f"{run['wall']:7.2f} s wall, {run['cpu']:7.2f} s cpu  ({phases})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of A, B (and C), in rotating order (default 3)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed small A and B runs")
    ap.add_argument("--compare-tree", type=Path, metavar="DIR",
                    help="also time the builder from this source tree (side C), e.g. the commit before a change")
    ap.add_argument("--marginal", type=int, metavar="N", default=None,
                    help="also run both sides on the first N captions: the marginal per-image time (start-up and"
                         " loads excluded) is (large - small) / (images difference), the minimum over repeats")
    ap.add_argument("--raw-child", metavar="JOB", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_child:
        return raw_child(args.raw_child)

    with C.bench_tmpdir("overhead") as tmp:
        recipe_path = C.write_recipe(tmp / "recipe", args.captions, res=args.resolution, steps=args.steps,
                                     batch_size=args.batch_size)
        recipe, items = C.load_items(recipe_path)
        from synthvlm_builder.execution.worker import cpu_threads
        C.model_source(recipe.score.clip.model)  # build the builtins now, untimed, for both sides
        job = {"source": C.model_source(recipe.generate.model), "dtype": recipe.generate.dtype,
               "kwargs": C.pipe_kwargs(recipe), "batch_size": args.batch_size, "threads": cpu_threads(),
               "prompts": [it.caption.text for it in items], "seeds": [it.seed for it in items]}
        job_file = tmp / "raw_job.json"
        job_file.write_text(json.dumps(job))
        C.header("overhead")
        print(f"{len(items)} images, {args.resolution} px, {args.steps} steps, batch {args.batch_size}, "
              f"{job['threads']} torch threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset: libgomp default)')}")
        tree = args.compare_tree.resolve() if args.compare_tree else None
        sides = {"A": lambda i: run_a(job_file), "B": lambda i: run_b(recipe_path, tmp / f"out-b{i}")}
        if tree:
            sides["C"] = lambda i: run_b(recipe_path, tmp / f"out-c{i}", tree)
            print(f"side C: the builder from {tree}")
        if args.marginal:  # the same sides on fewer captions: their difference is the per-image cost
            small_recipe = C.write_recipe(tmp / "small", args.marginal, res=args.resolution, steps=args.steps,
                                          batch_size=args.batch_size)
            _, small_items = C.load_items(small_recipe)
            small_job = tmp / "small_job.json"
            small_job.write_text(json.dumps({**job, "prompts": job["prompts"][:len(small_items)],
                                             "seeds": job["seeds"][:len(small_items)]}))
            extra = {"a": lambda i: run_a(small_job), "b": lambda i: run_b(small_recipe, tmp / f"out-bs{i}")}
            if tree:
                extra["c"] = lambda i: run_b(small_recipe, tmp / f"out-cs{i}", tree)
            sides.update(extra)
            print(f"marginal: also {len(small_items)} images (sides a, b{', c' if tree else ''})")
        if not args.no_warmup:  # first-touch costs (page cache, .pyc) land here, on no side
            small = C.write_recipe(tmp / "warm", min(8, args.captions), res=args.resolution, steps=args.steps,
                                   batch_size=args.batch_size)
            warm_job = tmp / "warm_job.json"
            warm_job.write_text(json.dumps({**job, "prompts": job["prompts"][:8], "seeds": job["seeds"][:8]}))
            run_a(warm_job)
            run_b(small, tmp / "warm-b")
            if tree:
                run_b(small, tmp / "warm-c", tree)

        names = list(sides)
        walls = {k: [] for k in names}
        big = [k for k in names if k.isupper()]
        ratios = {k: [] for k in big[1:]}
        for i in range(args.repeats):
            runs = {}
            for side in names[i % len(names):] + names[: i % len(names)]:  # rotate the order
                runs[side] = sides[side](i)
                walls[side].append(runs[side]["wall"])
                print(f"run {i + 1} {side}: {fmt(runs[side])}  load {C.load_average()}", flush=True)
            for side in big[1:]:
                ratios[side].append(runs[side]["wall"] / runs["A"]["wall"])
                stages = ", ".join(f"{k} {v:.2f}" for k, v in runs[side]["stages"].items())
                print(f"run {i + 1} {side}/A = {ratios[side][-1]:.3f}  (cpu {runs[side]['cpu'] / runs['A']['cpu']:.3f};"
                      f" {side}'s stage seconds: {stages})", flush=True)

    a = C.median(walls["A"])
    print(f"median wall: A {a:.2f} s ({len(items) / a:.2f} img/s end to end), "
          + ", ".join(f"{k} {C.median(walls[k]):.2f} s" for k in big[1:]))
    if args.marginal:
        n = len(items) - len(small_items)
        per = {k: (min(walls[k]) - min(walls[k.lower()])) / n * 1000 for k in big}
        for side in big[1:]:
            print(f"marginal per image ({len(small_items)} -> {len(items)} images, minimum of {args.repeats}):"
                  f" {side} {per[side]:.1f} ms, A {per['A']:.1f} ms: marginal ratio {per[side] / per['A']:.3f}")
        print(f"RESULT overhead_marginal_ratio {per['B'] / per['A']:.3f} target {TARGET:.2f}", flush=True)
    for side, values in ratios.items():  # noqa: B007
        print(f"{side}/A: median {C.median(values):.3f} (per run {', '.join(f'{r:.3f}' for r in values)}); "
              f"ratio of medians {C.median(walls[side]) / a:.3f}")
    C.result("overhead_ratio", C.median(ratios["B"]), f"{TARGET:.2f}")

if __name__ == "__main__":
    main()
