"""`plan --measure`: time a few denoising steps of the recipe's own model on this machine's device and
turn the plan's counts into an estimated wall time.

Two timed calls of one batch, at 2 and at 4 steps (after a warm-up), separate the cost of a denoising
step from the fixed cost of an image (text encoding, VAE decode): per image, time = steps x step + fixed.
The estimate covers generation only (scoring, encoding and writing overlap it in a build).
"""
from __future__ import annotations

import time

from ..recipe import Recipe


def measure(recipe: Recipe, device: str | None = None, captions: tuple[str, ...] = ()) -> dict:
    import torch

    from ..models.generator import ImageGenerator
    from ..models.loading import load_pipeline, resolve_device

    g = recipe.generate
    dev = resolve_device(device or recipe.execution.device)
    pipe = load_pipeline(g.model, revision=g.revision, dtype=g.dtype, scheduler=g.scheduler, device=dev,
                         variant=g.variant, compile=g.compile)
    batch = g.batch_size if isinstance(g.batch_size, int) else 1
    prompts = (list(captions) or ["a photo of a red bicycle leaning against a brick wall"]) * batch
    prompts, seeds = prompts[:batch], list(range(batch))

    def timed(steps: int) -> float:
        gen = ImageGenerator(pipe, steps=steps, guidance_scale=g.guidance_scale, resolution=g.resolution,
                             negative_prompt=g.negative_prompt)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        gen.generate_tensor(prompts, seeds)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    timed(2)  # warm-up: kernels, allocator, compile
    t2, t4 = timed(2), timed(4)
    step = max(t4 - t2, 0.0) / 2 / batch
    fixed = max(t2 / batch - 2 * step, 0.0)
    per_image = g.steps * step + fixed
    return {"device": str(dev), "batch_size": batch, "seconds_per_step_per_image": round(step, 5),
            "fixed_seconds_per_image": round(fixed, 5), "seconds_per_image": round(per_image, 5)}


def estimate(measured: dict, candidates: int | None) -> dict:
    if candidates is None:
        return {**measured, "generation_seconds": None, "device_hours": None}
    seconds = candidates * measured["seconds_per_image"]
    return {**measured, "generation_seconds": round(seconds, 1), "device_hours": round(seconds / 3600, 3)}


def format_measured(m: dict, candidates: int | None) -> str:
    head = (f"measured     on {m['device']}, batch {m['batch_size']}: {m['seconds_per_step_per_image'] * 1000:.1f} ms"
            f" per denoising step and {m['fixed_seconds_per_image'] * 1000:.1f} ms fixed per image ->"
            f" {m['seconds_per_image']:.3f} s per image")
    if m["generation_seconds"] is None:
        return head + "\nestimate     unknown number of candidates (set captions.sources[].limit)"
    return head + (f"\nestimate     {candidates:,} images x {m['seconds_per_image']:.3f} s ="
                   f" {m['device_hours']:,.2f} device-hours of generation on this device")


def spread(shards: list | None, images_per_caption: int, nodes: int, measured: dict | None = None) -> dict:
    """`plan --nodes N`: the plan's shards over N nodes (one generation actor each, README "Scaling out").
    Shards are handed out as nodes free up, so no node runs more than ceil(shards / N) of them; the wall
    time is the busiest node's images at the measured rate (generation only, as `estimate`; a node's
    model load and the final assembly come on top)."""
    if shards is None:
        return {"nodes": nodes, "shards_per_node": None, "images_per_node": None, "wall_seconds": None}
    sizes = sorted(((stop - start) * images_per_caption for start, stop in shards), reverse=True)
    load = [0] * nodes
    count = [0] * nodes
    for size in sizes:  # the longest first, each to the least loaded node: how a pool drains a queue
        i = load.index(min(load))
        load[i] += size
        count[i] += 1
    busiest = max(load) if sizes else 0
    wall = None if measured is None else round(busiest * measured["seconds_per_image"], 1)
    return {"nodes": nodes, "shards_per_node": max(count), "images_per_node": busiest, "wall_seconds": wall}


def format_spread(s: dict) -> str:
    if s["shards_per_node"] is None:
        return f"nodes        {s['nodes']}: unknown number of shards (set captions.sources[].limit)"
    n = s["shards_per_node"]
    text = (f"nodes        {s['nodes']}: at most {n:,} shard{'s' if n != 1 else ''} ({s['images_per_node']:,} images)"
            " per node")
    if s["wall_seconds"] is not None:
        text += f"; about {s['wall_seconds']:,.1f} s of generation (wall) with a device like this one per node"
    return text
