"""Adaptive best-of-k against fixed best-of-4 on the shapes world: `python benchmarks/adaptive.py`.

Real builds (the builder's own curation, rounds, scoring, selection) of held-out captions of the shapes
world (models/shapes/world.py `is_held_out`) with recipes/quickstart.yaml's models, sampling and score,
every candidate kept so that the pixel oracle (world.check) can judge each build's pick per caption:

1. a fixed best-of-4 build. Adaptive best-of-4 with stopping threshold S makes candidate k of a caption
   exactly when the best of its first k is below S, with the same seeds, so what it would make and pick
   at each S is read off these candidates; the threshold taken is the one making the fewest images
   whose pick's oracle agreement stays within 0.01 of best-of-4's at that threshold and every higher one;
2. an adaptive build `images_per_caption: {max: 4, until: {min_score: S}}` of the same captions: its
   agreement and the images it generated (its cost ledger) are the measurement.

Also printed, as a check that S is not fitted to these captions: two-fold cross-validation (S chosen
on half the captions, the agreement it loses measured on the other half). Last line:
`RESULT adaptive_generation_fraction X target 0.6`: the adaptive build's images / the fixed build's.
"""
from __future__ import annotations

import _common  # noqa: F401  (offline environment, OMP policy, repo on sys.path)

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _common import ROOT, bench_tmpdir, header, result  # noqa: E402
from quality import held_out  # noqa: E402

TOLERANCE = 0.01  # the agreement adaptive may lose against fixed best-of-4
K = 4


def recipe_text(captions_file: Path, n: int, k_spec: str) -> str:
    """quickstart.yaml's models, sampling and score over `n` captions, every candidate kept."""
    text = (ROOT / "recipes" / "quickstart.yaml").read_text()
    head, _, rest = text.partition("captions:\n")
    generate = rest[rest.index("generate:"):rest.index("select:")]
    generate = generate.replace("images_per_caption: 4", f"images_per_caption: {k_spec}")
    return (f"name: adaptive-bench\nversion: 0.1.0\nseed: 0\ncaptions:\n  sources:\n    - type: jsonl\n"
            f"      path: {captions_file}\n      id_column: id\n  filters:\n    max_tokens: 24\n"
            f"{generate}select:\n  size: {K * n}\n  per_caption: all\n  allow_fewer: true\n"
            "format:\n  image_format: png\nexecution:\n  shard_size: 64\n  device: cpu\n")


def build(root: Path, name: str, captions: list[str], k_spec: str) -> dict:
    """Build and return per caption index: the candidates' k, scores and oracle verdicts, and the stats."""
    import pyarrow.parquet as pq
    from PIL import Image

    from synthvlm_builder import api
    from synthvlm_builder.models.shapes import world
    d = root / name
    d.mkdir()
    with open(d / "caps.jsonl", "w") as f:
        for i, c in enumerate(captions):
            f.write(json.dumps({"id": f"{i:05d}", "caption": c}) + "\n")
    (d / "r.yaml").write_text(recipe_text(d / "caps.jsonl", len(captions), k_spec))
    t = time.perf_counter()
    res = api.build(d / "r.yaml", d / "out")
    seconds = time.perf_counter() - t
    cand: dict[int, list] = {}
    for f in sorted((d / "out" / "data").glob("*.parquet")):
        table = pq.read_table(f, columns=["id", "image", "score", "caption"]).to_pylist()
        for row in table:
            cid, _, k = row["id"].rpartition("-")
            image = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"))
            cand.setdefault(int(cid.rpartition(":")[2]), []).append(
                (int(k), float(row["score"]), bool(world.check(image, row["caption"])["all"])))
    return {"candidates": {i: sorted(v) for i, v in cand.items()}, "stats": res.stats, "seconds": seconds}


def best_agrees(cands: list) -> bool:
    """Oracle verdict of the candidate selection keeps: highest score, then smallest id (lowest k)."""
    return max(cands, key=lambda c: (c[1], -c[0]))[2]


def simulate(candidates: dict, threshold: float) -> tuple[float, float]:
    """(agreement, images / (K * captions)) adaptive best-of-K would have had on fixed-K candidates."""
    agree, made = [], 0
    for cands in candidates.values():
        taken = []
        for c in cands:
            taken.append(c)
            if max(x[1] for x in taken) >= threshold:
                break
        made += len(taken)
        agree.append(best_agrees(taken))
    return float(np.mean(agree)), made / (K * len(candidates))


def choose(candidates: dict) -> tuple[float, float, float, float]:
    """(threshold, its agreement, its generation fraction, best-of-4's agreement) on `candidates`."""
    fixed = float(np.mean([best_agrees(c) for c in candidates.values()]))
    scores = sorted({c[1] for cands in candidates.values() for c in cands})
    grid = sorted({float(np.quantile(scores, q)) for q in np.linspace(0.0, 1.0, 201)}, reverse=True)
    chosen = (np.inf, fixed, 1.0)
    for t in grid:  # from the highest threshold down: stop at the first that loses too much
        agree, frac = simulate(candidates, t)
        if agree < fixed - TOLERANCE:
            break
        chosen = (t, agree, frac)
    return (*chosen, fixed)


def cross_validate(candidates: dict) -> list[dict]:
    """Two folds: the threshold chosen on one half, the agreement it loses on the other."""
    keys = sorted(candidates)
    halves = [{k: candidates[k] for k in keys[i::2]} for i in (0, 1)]
    out = []
    for fit, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        t = choose(fit)[0]
        agree, frac = simulate(test, t)
        fixed = float(np.mean([best_agrees(c) for c in test.values()]))
        out.append({"threshold": round(t, 4), "agreement_lost": round(fixed - agree, 4),
                    "generation_fraction": round(frac, 4)})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=300, help="held-out captions")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args(argv)
    header("adaptive")
    _, captions, _ = held_out(args.captions, args.seed)
    out: dict = {"captions": args.captions, "k": K}
    with bench_tmpdir("adaptive") as root:
        fixed = build(root, "fixed", captions, str(K))
        threshold, agree, frac, _ = choose(fixed["candidates"])
        threshold = round(threshold, 4) if np.isfinite(threshold) else 1e9
        out["threshold"] = {"min_score": threshold, "predicted_agreement": round(agree, 4),
                            "predicted_generation_fraction": round(frac, 4)}
        out["cross_validation"] = cross_validate(fixed["candidates"])
        adaptive = build(root, "adaptive", captions, f"{{max: {K}, until: {{min_score: {threshold}}}}}")
    a_fixed = float(np.mean([best_agrees(c) for c in fixed["candidates"].values()]))
    a_adapt = float(np.mean([best_agrees(c) for c in adaptive["candidates"].values()]))
    images_fixed = fixed["stats"]["ledger"]["total"]["images"]
    images_adapt = adaptive["stats"]["ledger"]["total"]["images"]
    fraction = images_adapt / images_fixed
    out["measured"] = {
        "captions_curated": len(fixed["candidates"]),
        "fixed_best_of_4_agreement": round(a_fixed, 4), "adaptive_agreement": round(a_adapt, 4),
        "agreement_difference": round(a_fixed - a_adapt, 4), "within_tolerance": a_fixed - a_adapt <= TOLERANCE,
        "images_fixed": images_fixed, "images_adaptive": images_adapt,
        "candidates_per_caption": adaptive["stats"].get("candidates_per_caption"),
        "build_seconds_fixed": round(fixed["seconds"], 1), "build_seconds_adaptive": round(adaptive["seconds"], 1)}
    print(json.dumps(out, indent=2))
    print(f"oracle agreement: fixed best-of-4 {a_fixed:.4f}, adaptive (max 4, min_score {threshold}) {a_adapt:.4f}")
    result("adaptive_generation_fraction", fraction, "0.6")
    return out


if __name__ == "__main__":
    main()
