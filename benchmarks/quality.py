"""Quality of the built-in shapes models and of best-of-k selection: `python benchmarks/quality.py`.

On held-out captions of the shapes world (scenes no model trained on: models/shapes/world.py
`is_held_out`), with the builder's own parts (`load_pipeline`, `ImageGenerator` with the builder's
per-candidate seeds, `load_clip` + `ClipScorer`, the reference SSIM, `combined_score`) and the sampling
and score settings of recipes/quickstart.yaml, it measures:

(a) the CLIP alone, on clean renders: mean cosine of matched pairs and of hard-negative pairs (a scene
    one attribute or binding away), and top-1 retrieval of the true caption among it and 7 near misses;
(b) agreement with the pixel oracle (every attribute of the caption right) of a random candidate, of
    the builder's best-of-k pick, and of the best candidate the oracle itself could pick among the k
    (the ceiling);
(c) the pick by the paper's CLIP + 0.5 * SSIM (what the quickstart selects by) against CLIP alone.

The last line is `RESULT selection_headroom_captured <value> target 0.5`: (picked - random) /
(ceiling - random) for the quickstart's score. Targets: picked >= 0.85, headroom >= 0.10, captured
>= 0.5, top-1 retrieval >= 0.8 (`targets_met` in the JSON).
"""
from __future__ import annotations

import _common  # noqa: F401  (offline environment, OMP policy, repo on sys.path)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from synthvlm_builder.execution.plan import derive_seed  # noqa: E402
from synthvlm_builder.models.loading import load_clip, load_pipeline  # noqa: E402
from synthvlm_builder.models.shapes import world  # noqa: E402
from synthvlm_builder.models.shapes.negatives import hard_negative  # noqa: E402
from synthvlm_builder.recipe.loader import load_recipe  # noqa: E402
from synthvlm_builder.models.clip import ClipScorer  # noqa: E402
from synthvlm_builder.models.generator import ImageGenerator  # noqa: E402
from synthvlm_builder.stages.score import combined_score, ssim_roundtrip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_NEGATIVES = 7  # retrieval among 8 captions: the true one and 7 near misses
ATTRIBUTES = ("background", "count", "color", "shape", "position")


def held_out(n: int, seed: int) -> tuple[list[world.Scene], list[str], list[bool]]:
    """n held-out scenes, their captions (positions named or not, as the world draws them) and
    whether each caption names positions."""
    rng = np.random.default_rng(seed)
    scenes = [world.split_scene(rng, held_out=True) for _ in range(n)]
    placed = [bool(rng.random() >= world.P_NO_POSITION) for _ in scenes]
    return scenes, [world.caption(s, rng, p) for s, p in zip(scenes, placed)], placed


def clip_alone(scorer: ClipScorer, scenes, captions, placed, seed: int) -> dict:
    rng = np.random.default_rng([seed, 1])
    images = np.stack([np.asarray(world.render(s)) for s in scenes])
    emb = scorer.image_embeddings(images)
    pos = scorer.similarity(emb, captions)
    negs = [world.caption(hard_negative(s, rng, p), rng, p) for s, p in zip(scenes, placed) for _ in range(N_NEGATIVES)]
    neg = scorer.similarity(emb.repeat_interleave(N_NEGATIVES, 0), negs).reshape(len(scenes), N_NEGATIVES)
    return {"cos_matched": round(float(pos.mean()), 4), "cos_hard_negative": round(float(neg.mean()), 4),
            "top1_retrieval": round(float((pos > neg.max(1)).mean()), 4)}


def pick(ok: np.ndarray, scores: np.ndarray) -> float:
    """Agreement of the candidate with the highest score per caption (first on ties, as selection)."""
    return float(ok[np.arange(len(ok)), scores.argmax(1)].mean())


def selection(ok: np.ndarray, clip: np.ndarray, combo: np.ndarray) -> dict:
    """ok, clip, combo: (captions, k)."""
    r = {"random": float(ok.mean()), "clip_pick": pick(ok, clip), "clip_ssim_pick": pick(ok, combo),
         "ceiling": float(ok.any(1).mean())}
    head = r["ceiling"] - r["random"]
    r["headroom"] = head
    r["captured_clip"] = (r["clip_pick"] - r["random"]) / head if head > 0 else 0.0
    r["captured_clip_ssim"] = (r["clip_ssim_pick"] - r["random"]) / head if head > 0 else 0.0
    return {k: round(v, 4) for k, v in r.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "quickstart.yaml"),
                    help="sampling and score settings (generate.*, score.*) to measure")
    ap.add_argument("--captions", type=int, default=400, help="held-out captions")
    ap.add_argument("--k", type=int, default=None, help="candidates per caption (default: the recipe's)")
    ap.add_argument("--steps", type=int, default=None, help="override generate.steps")
    ap.add_argument("--guidance", type=float, default=None, help="override generate.guidance_scale")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--grid", default="", help="write a PNG of the first 16 captions' candidates here")
    args = ap.parse_args(argv)
    recipe = load_recipe(Path(args.recipe))
    g, s = recipe.generate, recipe.score
    g = dataclasses.replace(g, **{k: v for k, v in (("steps", args.steps), ("guidance_scale", args.guidance))
                                  if v is not None})
    k = args.k or g.max_candidates

    t = time.perf_counter()
    pipe = load_pipeline(g.model, dtype=g.dtype, device="cpu")
    scorer = ClipScorer(load_clip(s.clip.model, s.clip.pretrained, "cpu"), prefix=s.clip.prefix)
    load_s = time.perf_counter() - t
    gen = ImageGenerator(pipe, steps=g.steps, guidance_scale=g.guidance_scale, resolution=g.resolution)

    scenes, captions, placed = held_out(args.captions, args.seed)
    res = {"models": [g.model, s.clip.model], "load_s": round(load_s, 3), "captions": len(captions), "k": k,
           "steps": g.steps, "guidance_scale": g.guidance_scale, "resolution": list(g.resolution),
           "two_object_share": round(float(np.mean([len(x.objects) == 2 for x in scenes])), 3),
           "positionless_share": round(1 - float(np.mean(placed)), 3),
           "clip": clip_alone(scorer, scenes, captions, placed, args.seed)}

    # Candidates exactly as a build draws them: candidate j of caption i from derive_seed(seed, id, j).
    jobs = [(i, j) for i in range(len(captions)) for j in range(k)]
    images = np.zeros((len(captions), k, g.resolution[1], g.resolution[0], 3), np.uint8)
    t = time.perf_counter()
    for b in range(0, len(jobs), args.batch_size):
        part = jobs[b:b + args.batch_size]
        out = gen.generate([captions[i] for i, _ in part],
                           [derive_seed(recipe.seed, f"heldout:{i:04d}", j) for i, j in part])
        for (i, j), im in zip(part, out):
            images[i, j] = im
    res["generate_s"] = round(time.perf_counter() - t, 1)

    flat = images.reshape(-1, *images.shape[2:])
    flat_caps = [c for c in captions for _ in range(k)]
    clip = scorer.score(flat, flat_caps).reshape(len(captions), k)
    ssim = ssim_roundtrip(flat, s.ssim.size).reshape(len(captions), k)
    combo = combined_score(clip, ssim, s.ssim.weight)
    checks = [[world.check(im, c) for im in ims] for ims, c in zip(images, captions)]
    ok = np.array([[c["all"] for c in row] for row in checks])
    res["per_attribute"] = {a: round(float(np.mean([[c[a] for c in row] for row in checks])), 4) for a in ATTRIBUTES}
    two = np.array([len(x.objects) == 2 for x in scenes])
    unplaced = ~np.array(placed)
    res["random_by_kind"] = {"one_object": round(float(ok[~two].mean()), 4),
                             "two_objects": round(float(ok[two].mean()), 4),
                             "positions_named": round(float(ok[~unplaced].mean()), 4),
                             "positions_open": round(float(ok[unplaced].mean()), 4)}
    res["selection"] = selection(ok, clip, combo)
    res["selection_two_objects"] = selection(ok[two], clip[two], combo[two])
    res["cos_generated"] = {"right": round(float(clip[ok].mean()), 4) if ok.any() else None,
                            "wrong": round(float(clip[~ok].mean()), 4) if (~ok).any() else None}
    sel = res["selection"]
    res["targets_met"] = {"picked>=0.85": sel["clip_ssim_pick"] >= 0.85, "headroom>=0.10": sel["headroom"] >= 0.10,
                          "captured>=0.5": sel["captured_clip_ssim"] >= 0.5,
                          "top1>=0.8": res["clip"]["top1_retrieval"] >= 0.8}
    print(json.dumps(res, indent=2))
    if args.grid:
        from PIL import Image

        m, size = min(16, len(captions)), images.shape[2]
        grid = images[:m].transpose(0, 2, 1, 3, 4).reshape(m * size, k * size, 3)
        Image.fromarray(grid).resize((k * 64, m * 64), Image.Resampling.NEAREST).save(args.grid)
    print(f"RESULT selection_headroom_captured {sel['captured_clip_ssim']:.4f} target 0.5")
    return res


if __name__ == "__main__":
    main()
