"""`plan --measure`: time a few denoising steps of the recipe's own model on this machine's device and
turn the plan's counts into an estimated wall time.

Two timed calls of one batch, at 2 and at 4 steps (after a warm-up), separate the cost of a denoising
step from the fixed cost of an image (text encoding, VAE decode): per image, time = steps x step + fixed.
The estimate covers generation only (scoring, encoding and writing overlap it in a build).

An adaptive best-of-k recipe's first MEASURE_CAPTIONS curated captions also go through the build's own
rounds (`measure_rounds`: execution/worker.py `scratch_shard`), which gives the candidates per caption the plan's expected count is made from.

What was measured is kept (`save`) as $SYNTHVLM_CACHE/measured/KEY.json, KEY the hash of everything that
changes what an image costs (`cost_key`); a build with the same key puts it beside its actual cost
(`build_estimate`). The record is state read from disk (state.py "measured"): one that does not validate,
or that holds another key, is ignored with a warning.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import reporter
from ..recipe import Recipe

MEASURE_CAPTIONS = 16  # curated captions an adaptive recipe's `plan --measure` runs through the rounds
HOW = ("no measurement of this generator on this device: `synthvlm-build plan --measure RECIPE` here, before"
       " the build, puts its estimate beside the actual")


def measure(recipe: Recipe, device: str | None = None, captions: tuple[str, ...] = ()) -> dict:
    import torch

    from ..models.generator import ImageGenerator
    from ..models.loading import load_pipeline, resolve_device

    g = recipe.generate
    dev = resolve_device(device or recipe.execution.device)
    if dev.type == "cpu":  # the thread count a build's worker pins (execution/worker.py): the same kernels
        from .worker import cpu_threads
        torch.set_num_threads(cpu_threads())
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
            "fixed_seconds_per_image": round(fixed, 5), "seconds_per_image": round(per_image, 5),
            "device_type": dev.type, "cpu_threads": torch.get_num_threads() if dev.type == "cpu" else None}


def measure_captions(recipe: Recipe, device: str | None, n: int = MEASURE_CAPTIONS) -> list:
    """The first `n` curated captions an adaptive recipe's rounds are measured on (curate.py first_captions);
    none when no caption survives (the plan then has no expected count)."""
    from ..curation.captions import Funnel
    from ..errors import BuildError
    from .curate import first_captions
    try:
        return first_captions(recipe, n, Funnel(), device)
    except BuildError:
        return []


def measured_from(rounds: dict) -> str:
    """Where an expected count measured by `measure_rounds` came from (plan's text and JSON, the build's)."""
    return f"{rounds['mean']:.2f} per caption by plan --measure on {rounds['captions']} captions"


def measure_rounds(recipe: Recipe, device: str | None, captions: list) -> dict:
    """Adaptive best-of-k: `captions` made as a build makes one shard (worker.scratch_shard: the rounds, the
    stopping rule on the real scores); the candidates each caption took."""
    from .rounds import mean_candidates
    from .worker import ShardWorker, scratch_shard
    marker, _ = scratch_shard(ShardWorker(recipe, device or recipe.execution.device), captions)
    hist = marker["candidates_per_caption"]
    return {"captions": len(captions), "candidates_per_caption": hist, "mean": round(mean_candidates(hist), 5)}


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


# --- the record a build reads ----------------------------------------------------------------------

def generator_weights(recipe: Recipe, inputs: dict | None = None) -> str | None:
    """What names the generator's weights: the content identity's digest (`inputs`, a build's), else read
    now (models/uses.py digest); None for a backend that names no model."""
    from ..models.uses import digest
    from ..recipe import recipe_to_dict
    from ..recipe.components import model_uses
    for use in model_uses(recipe_to_dict(recipe)):
        if use.digest == "generate.model":
            return (inputs or {}).get(use.digest) or digest(use)
    return None


def cost_key(recipe: Recipe, device_type: str | None, cpu_threads: int | None, weights: str | None) -> dict:
    """Everything that changes what generating an image costs: the model and its weights, how it runs
    and the device (type and, on the CPU, threads)."""
    g = recipe.generate
    return {"backend": g.backend, "model": g.model, "revision": g.revision, "weights": weights,
            "variant": g.variant, "dtype": g.dtype, "scheduler": g.scheduler, "compile": g.compile,
            "steps": g.steps, "resolution": list(g.resolution), "guidance_scale": g.guidance_scale,
            "batch_size": g.batch_size, "device_type": device_type, "cpu_threads": cpu_threads}


def record_path(key: dict) -> Path:
    from ..settings import cache_dir
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return cache_dir() / "measured" / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"


def save(recipe: Recipe, measured: dict, rounds: dict | None, fingerprint: str) -> Path | None:
    """Keep what `plan --measure` measured for a later build; a cache that cannot be written costs only
    the comparison (a warning)."""
    from ..atomic import atomic_write
    key = cost_key(recipe, measured["device_type"], measured["cpu_threads"], generator_weights(recipe))
    record = {"key": key, "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "device": measured["device"], "seconds_per_image": measured["seconds_per_image"],
              "rounds": None if rounds is None else {"fingerprint": fingerprint, "captions": rounds["captions"],
                                                     "mean": rounds["mean"]}}
    path = record_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(record, indent=1) + "\n")
    except OSError as e:
        reporter.warning(f"the measurement was not kept for a later build: {path}: {e.strerror or e}")
        return None
    return path


def recorded(key: dict) -> dict | None:
    """The record measured for `key`, if there is a valid one (state.py "measured")."""
    from ..state import StateError, load
    path = record_path(key)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        record = load(path, "measured")
    except StateError as e:
        reporter.warning(f"measurement ignored: {e}")
        return None
    if record["key"] != key:
        reporter.warning(f"measurement ignored: {path}: it was measured for another generator or device")
        return None
    return record


def build_estimate(recipe: Recipe, fingerprint: str, inputs: dict, markers: list[dict], n_captions: int,
                   ledger: dict) -> dict:
    """stats.json `ledger.estimate`: `plan`'s bound (and expected count), `plan --measure`'s estimate of
    generation on this device (None, and how to get one, without a record) and the actual, side by side."""
    from .plan import make_plan
    where = {(m.get("device_type"), m.get("cpu_threads")) for m in markers}
    record = None
    if len(where) == 1:
        device_type, threads = where.pop()
        record = recorded(cost_key(recipe, device_type, threads, generator_weights(recipe, inputs)))
    rounds = (record or {}).get("rounds")
    per_caption = None
    if recipe.generate.adaptive and rounds and rounds["fingerprint"] == fingerprint:
        per_caption = (rounds["mean"], measured_from(rounds))
    planned = make_plan(recipe, n_captions, per_caption=per_caption)
    images = planned.expected_candidates if planned.expected_candidates is not None else planned.candidates
    out = {"images": planned.candidates, "expected_images": planned.expected_candidates,
           "expected_from": planned.expected_from, "gpu_hours_at_reference": planned.gpu_hours}
    if record is None:
        out["measured"], out["how"] = None, HOW
    else:
        out["measured"] = {"measured_at": record["measured_at"], "device": record["device"],
                           "seconds_per_image": record["seconds_per_image"], "images": images,
                           "device_hours": round(images * record["seconds_per_image"] / 3600, 6)}
    t = ledger["total"]
    generate = ledger["finished"]["device_seconds"]["generate"] + ledger["redone"]["device_seconds"]["generate"]
    out["actual"] = {"images": t["images"], "device_hours": round(generate / 3600, 6)}
    return out


def estimate_line(e: dict) -> str:
    """The estimate beside the actual, as the CLI prints it after a build."""
    bound = f"plan's bound {e['images']:,} images"
    if e.get("expected_images") is not None:
        bound += f", expected ~{e['expected_images']:,} ({e['expected_from']})"
    actual = e["actual"]
    done = f"actual {actual['images']:,} images, {_hours(actual['device_hours'])} of generation"
    m = e.get("measured")
    if m is None:
        return f"estimate vs actual: {bound}; {done}; {e.get('how') or HOW}"
    return (f"estimate vs actual: {bound}; measured {m['seconds_per_image']:.4f} s per image on {m['device']}"
            f" ({m['measured_at']}): {_hours(m['device_hours'])} for {m['images']:,} images; {done}")


def _hours(hours: float) -> str:
    return f"{hours:.3f} device-hours" if hours >= 0.1 else f"{hours * 3600:.1f} device-seconds"
