"""Scoring headroom: CLIPScore and SSIM throughput against generation throughput, same device,
same resolution, same images.

    python benchmarks/scoring.py                       # tiny SD + tiny CLIP, 256 px, 4 steps, CPU
    python benchmarks/scoring.py --clip ViT-L-14       # a ViT-L/14-size scorer (random weights)
    python benchmarks/scoring.py --images 8 --resolution 64 --steps 1 --repeats 1    # tests

Generation is the builder's ImageGenerator (batched, one generator per image); CLIPScore is the
builder's ClipScorer (preprocessing on the device, image + text towers); SSIM is the builder's
`ssim_roundtrip` (grayscale, resize to the recipe's size and back, scikit-image SSIM) spread over
the same CPU pool the worker uses (1 thread when the denoiser runs on the CPU, up to 8 otherwise).
Each stage runs over the same generated images in batches; times are medians over --repeats.

The scorer has to keep up with the generator with room to spare: the target is score throughput
>= 20x generation throughput, where score = CLIPScore + SSIM per image (the work the builder's
finish thread adds per image). It is meant for real model sizes: a tiny random diffusion model
generates a 256 px image in tens of milliseconds on a CPU, so tiny-model CPU figures show the
per-image cost of scoring rather than the headroom a real build has.

Last line: RESULT scoring_headroom <(CLIP + SSIM) img/s / generation img/s> target 20
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 20


def timed(fn, device, repeats: int) -> float:
    """Median seconds of fn() over repeats (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        C.sync(device)
        t0 = time.perf_counter()
        fn()
        C.sync(device)
        times.append(time.perf_counter() - t0)
    return C.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--model", default="builtin:tiny-sd")
    ap.add_argument("--clip", default="builtin:tiny-clip", help="builtin:tiny-clip or an open_clip architecture "
                    "(random weights), e.g. ViT-L-14")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None, help="default: float16 on cuda, float32 elsewhere")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np

    import torch
    from PIL import Image

    from synthvlm_builder.models.loading import load_pipeline, resolve_device
    from synthvlm_builder.stages.format import decode_image, encode_image
    from synthvlm_builder.models.clip import ClipScorer
    from synthvlm_builder.models.generator import ImageGenerator
    from synthvlm_builder.stages.score import ssim_roundtrip
    from synthvlm_builder.stages.ssim import ssim_on
    from synthvlm_builder.stages.ssim import ssim_roundtrip as ssim_batched

    device = resolve_device(args.device)
    dtype = args.dtype or ("float16" if device.type == "cuda" else "float32")
    bs = args.batch_size
    with C.bench_tmpdir("scoring") as tmp:
        path = C.write_recipe(tmp / "recipe", args.images, res=args.resolution, steps=args.steps, batch_size=bs,
                              model=args.model, dtype=dtype)
        recipe, items = C.load_items(path)
        if device.type == "cpu":
            C.pin_threads()
        g = recipe.generate
        generator = ImageGenerator(load_pipeline(args.model, dtype=dtype, device=device), steps=g.steps,
                                   guidance_scale=g.guidance_scale, resolution=g.resolution)
        scorer = ClipScorer(C.load_clip_any(args.clip, device), prefix=recipe.score.clip.prefix, device=device)
        texts, seeds = [it.caption.text for it in items], [it.seed for it in items]
        batches = [slice(i, i + bs) for i in range(0, len(items), bs)]
        images = np.concatenate([generator.generate(texts[b], seeds[b]) for b in batches])
        cpu_threads = 1 if device.type == "cpu" else min(8, os.cpu_count() or 1)  # as ShardWorker
        pool = ThreadPoolExecutor(cpu_threads)
        size = recipe.score.ssim.size
        on_device = torch.from_numpy(images).to(device)
        jpegs = [encode_image(im, "jpeg", recipe.format.quality) for im in images]
        stages = {
            "generate": lambda: [generator.generate(texts[b], seeds[b]) for b in batches],
            "clip": lambda: [scorer.score(on_device[b], texts[b]) for b in batches],
            "ssim": lambda: [ssim_on(on_device[b], images[b], size) for b in batches],  # what the builder runs here
            "ssim (torch, batched)": lambda: [ssim_batched(on_device[b], size) for b in batches],
            "ssim (skimage reference)": lambda: list(pool.map(lambda im: ssim_roundtrip(im[None], size), images)),
            "encode": lambda: list(pool.map(lambda im: encode_image(im, "jpeg", recipe.format.quality), images)),
            "decode": lambda: list(pool.map(decode_image, jpegs)),  # scores read the published bytes
        }
        C.header("scoring")
        print(f"{len(items)} images, batch {bs}, {args.resolution} px, {args.steps} steps, {args.model} {dtype} on "
              f"{device}; CLIP {args.clip}; SSIM size {size} on {cpu_threads} CPU thread(s)")
        rate = {}
        for name, fn in stages.items():
            rate[name] = len(items) / timed(fn, device, args.repeats)
        encoder = {}  # JPEG (PIL, quality 95: the default format) at the sizes real builds use
        for px in (512, 1024):
            big = np.stack([np.asarray(Image.fromarray(im).resize((px, px), Image.BICUBIC)) for im in images[:8]])
            encoder[px] = len(big) / timed(lambda: list(pool.map(lambda im: encode_image(im, "jpeg", 95), big)),
                                           device, args.repeats)
        pool.shutdown()

    gen = rate["generate"]
    score = 1 / (1 / rate["clip"] + 1 / rate["ssim"])
    finish = 1 / (1 / rate["clip"] + 1 / rate["ssim"] + 1 / rate["encode"] + 1 / rate["decode"])
    for name, value in [*rate.items(), ("clip + ssim", score), ("clip + ssim + encode + decode", finish)]:
        print(f"{name:<30} {value:10.1f} img/s  {value / gen:8.1f}x generation   ({1000 / value:8.2f} ms/img)")
    for px, value in encoder.items():
        print(f"JPEG encoder at {px} px ({cpu_threads} thread(s)) {value:8.1f} img/s  ({1000 / value:.1f} ms/img)")
    print(f"load {C.load_average()}")
    C.result("scoring_headroom", score / gen, f"{TARGET}")


if __name__ == "__main__":
    main()
