"""Does `evaluate --proxy clip` measure what data are worth? `python benchmarks/data_value.py`

From the same held-out shapes-world captions (scenes no built-in model trained on, models/shapes/world.py
`is_held_out`) and at the same size, four datasets of one image per caption:

  (a) best of 4: the builder's own selection (stages/select.py, per_caption best) over a real build of
      4 candidates per caption with the quickstart's models, sampling and scores (CLIP + 0.5 SSIM);
  (b) one random candidate per caption (seeded);
  (c) the worst-scored candidate per caption;
  (d) the rows of (a) with their captions shuffled among the images (a fixed permutation moving every one).

Each is written as a dataset folder and evaluated as `synthvlm-build evaluate DIR --proxy clip` does
(the API's `evaluate`, which the verb calls; 3 seeds; the held-out set is the world's rendered scenes). The pixel oracle
also says which share of each dataset's pairs is right (image and caption agree in every attribute).

Prints the four numbers (R@1 of both directions, (image->text + text->image) / 2 per seed, mean ± std over
the seeds; each direction's R@1 and R@5 beside it, the attribute accuracies in the JSON), the separations in
standard deviations (pooled over the two datasets' seeds, floored at one retrieval's worth),
and last `RESULT proxy_separation <min((a-d) / 5 std, (a-c) / 2 std)> target 1`: at least 1 when (d) is at
least 5 std below (a) and (a) is more than 2 std above (c), the targets of the issue. (a) against (b) is
reported as measured, within noise or not.
"""
from __future__ import annotations

import _common  # noqa: F401  (offline environment, OMP policy, repo on sys.path)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"a": "best of k (the builder's selection)", "b": "one random candidate", "c": "worst-scored candidate",
            "d": "(a) with captions shuffled"}


def held_out_captions(n: int, seed: int) -> list[str]:
    from synthvlm_builder.models.shapes import world
    rng = np.random.default_rng(seed)
    return [world.caption(world.split_scene(rng, held_out=True), rng) for _ in range(n)]


def write_recipe(d: Path, captions: list[str], k: int, quickstart: Path, batch_size: int) -> Path:
    """The quickstart's models, sampling and scores over `captions`, every candidate kept."""
    from synthvlm_builder.recipe import load_recipe
    q = load_recipe(quickstart)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "caps.jsonl", "w") as f:
        for i, text in enumerate(captions):
            f.write(json.dumps({"id": f"{i:05d}", "caption": text}) + "\n")
    g, s = q.generate, q.score
    text = f"""\
# Written by benchmarks/data_value.py: the quickstart's models, sampling and scores; every candidate kept.
name: data-value
version: 0.1.0
license: cc-by-4.0
seed: 0
captions:
  sources:
    - {{type: jsonl, path: caps.jsonl, name: heldout, id_column: id}}
  filters: {{dedupe: none}}
generate:
  model: {g.model}
  steps: {g.steps}
  guidance_scale: {g.guidance_scale}
  resolution: [{g.resolution[0]}, {g.resolution[1]}]
  images_per_caption: {k}
  batch_size: {batch_size}
  dtype: {g.dtype}
score:
  clip: {{model: {s.clip.model}, prefix: "{s.clip.prefix}"}}
  ssim: {{size: {s.ssim.size}, weight: {s.ssim.weight}}}
select: {{size: {len(captions) * k}, per_caption: all}}
format: {{image_format: {q.format.image_format}}}
execution: {{shard_size: {max(16, len(captions))}, device: cpu}}
"""
    (d / "recipe.yaml").write_text(text)
    return d / "recipe.yaml"


def read_candidates(build: Path) -> dict:
    import pyarrow.parquet as pq
    from synthvlm_builder import layout
    cols: dict = {"id": [], "caption": [], "image": [], "score": []}
    for f in layout.data_files(build):
        t = pq.read_table(f, columns=list(cols))
        for name in cols:
            cols[name] += t.column(name).to_pylist()
    cols["image"] = [im["bytes"] for im in cols["image"]]
    cols["caption_id"] = [i.rpartition("-")[0] for i in cols["id"]]
    return {k: np.array(v, dtype=object) if k != "score" else np.array(v, np.float32) for k, v in cols.items()}


def datasets(c: dict, recipe_path: Path, seed: int) -> dict:
    """Row indices of the candidates per dataset (and for (d) the captions' order)."""
    from synthvlm_builder.recipe import load_recipe
    from synthvlm_builder.stages.select import Candidates, select
    recipe = load_recipe(recipe_path)
    n = len(set(c["caption_id"]))
    cand = Candidates(id=c["id"].astype(str), caption_id=c["caption_id"].astype(str), scores={"score": c["score"]})
    best = np.flatnonzero(select(cand, recipe.select.replace(per_caption="best", size=n)).mask)
    by_caption: dict = {}
    for i, cid in enumerate(c["caption_id"]):
        by_caption.setdefault(cid, []).append(i)
    rng = np.random.default_rng(seed)
    groups = [by_caption[cid] for cid in sorted(by_caption)]
    random = np.array([g[int(rng.integers(len(g)))] for g in groups])
    worst = np.array([min(g, key=lambda i: (c["score"][i], c["id"][i])) for g in groups])
    return {"a": best, "b": np.sort(random), "c": np.sort(worst), "d": best}


def shuffled(texts: list, seed: int) -> list:
    """`texts` moved along one random cycle through all positions: no image keeps its own caption."""
    order = np.random.default_rng(seed).permutation(len(texts))
    out = list(texts)
    for i, j in zip(order, np.roll(order, -1)):
        out[i] = texts[j]
    return out


def write_dataset(folder: Path, images: list, captions: list) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({"image": [{"bytes": b, "path": f"{i:05d}.png"} for i, b in enumerate(images)],
                             "caption": list(captions)}), folder / "data" / "train-00000-of-00001.parquet")
    return folder


def oracle_right(images: list, captions: list) -> float:
    import io

    from PIL import Image

    from synthvlm_builder.models.shapes import world
    return float(np.mean([world.check(np.asarray(Image.open(io.BytesIO(b)).convert("RGB")), t)["all"]
                          for b, t in zip(images, captions)]))


def headline(result: dict) -> dict:
    """The benchmark's number per seed, its mean and its std (n-1) over the seeds."""
    per_seed = [(r["i2t_r1"] + r["t2i_r1"]) / 2 for r in result["runs"]]
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    return {"per_seed": [round(v, 4) for v in per_seed], "mean": round(float(np.mean(per_seed)), 4),
            "std": round(std, 4)}


def separation(x: dict, y: dict, floor: float) -> float:
    """(mean x - mean y) in pooled standard deviations of the seeds, the deviation floored at `floor`."""
    pooled = math.sqrt((x["std"] ** 2 + y["std"] ** 2) / 2)
    return (x["mean"] - y["mean"]) / max(pooled, floor)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=400, help="held-out captions: the size of each dataset")
    ap.add_argument("--k", type=int, default=4, help="candidates per caption")
    ap.add_argument("--seeds", type=int, default=3, help="proxy trainings per dataset")
    ap.add_argument("--steps", type=int, default=300, help="proxy training steps")
    ap.add_argument("--batch-size", type=int, default=64, help="proxy training batch")
    ap.add_argument("--eval-size", type=int, default=300, help="held-out rendered scenes to retrieve among")
    ap.add_argument("--gen-batch-size", type=int, default=32, help="generate.batch_size of the build")
    ap.add_argument("--seed", type=int, default=1234, help="which held-out captions, random picks and shuffle")
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "quickstart.yaml"),
                    help="models, sampling and scores (default: the quickstart's)")
    args = ap.parse_args(argv)
    from synthvlm_builder.api import evaluate
    from synthvlm_builder.cli import main as cli

    _common.header("data_value")
    started = time.perf_counter()
    with _common.bench_tmpdir("data-value") as tmp:
        captions = held_out_captions(args.captions, args.seed)
        recipe = write_recipe(tmp / "recipe", captions, args.k, Path(args.recipe), args.gen_batch_size)
        t = time.perf_counter()
        if cli([str(recipe), "--output", str(tmp / "build")]) != 0:
            raise SystemExit("the build failed")
        build_s = time.perf_counter() - t
        c = read_candidates(tmp / "build")
        picks = datasets(c, recipe, args.seed)
        results, right = {}, {}
        for name, idx in picks.items():
            images, texts = list(c["image"][idx]), list(c["caption"][idx])
            if name == "d":
                texts = shuffled(texts, args.seed)
            right[name] = oracle_right(images, texts)
            folder = write_dataset(tmp / f"dataset-{name}", images, texts)
            results[name] = evaluate(folder, seeds=args.seeds, steps=args.steps, batch_size=args.batch_size,
                                     eval_size=args.eval_size).data
            r, h = results[name], headline(results[name])
            print(f"({name}) {DATASETS[name]:<38} pairs right {right[name]:.3f}   R@1 {h['mean']:.3f} ± {h['std']:.3f}"
                  "   (" + ", ".join(f"{k} {r['mean'][k]:.3f} ± {r['std'][k]:.3f}" for k in
                                     ("i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5")) + ")", flush=True)
    floor = 1 / args.eval_size  # one retrieval's worth: seeds that agree exactly say nothing finer
    heads = {n: headline(r) for n, r in results.items()}
    sep = {pair: round(separation(heads[pair[0]], heads[pair[1]], floor), 2) for pair in ("ad", "ac", "ab")}
    value = min(sep["ad"] / 5, sep["ac"] / 2)
    out = {"captions": args.captions, "k": args.k, "seeds": args.seeds, "proxy": results["a"]["config"],
           "eval": results["a"]["eval"], "build_s": round(build_s, 1),
           "total_s": round(time.perf_counter() - started, 1),
           "datasets": {n: {"what": DATASETS[n], "pairs_right": round(right[n], 4), "r1": heads[n],
                            "mean": results[n]["mean"], "std": results[n]["std"]} for n in results},
           "separation_std": {"a-d": sep["ad"], "a-c": sep["ac"], "a-b": sep["ab"]},
           "targets_met": {"a-d>=5": sep["ad"] >= 5, "a-c>2": sep["ac"] > 2}}
    print(json.dumps(out, indent=2))
    print(f"separation in std of R@1 (both directions): (a)-(d) {sep['ad']:.1f} (target >= 5), (a)-(c) {sep['ac']:.1f}"
          f" (target > 2), (a)-(b) {sep['ab']:.1f} ({'within noise' if abs(sep['ab']) < 2 else 'apart'})")
    _common.result("proxy_separation", value, "1")
    return out


if __name__ == "__main__":
    main()
