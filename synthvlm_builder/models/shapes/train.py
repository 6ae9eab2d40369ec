"""Train the shapes-world models: `python -m synthvlm_builder.models.shapes.train --out DIR`.

Writes DIR/shapes-sd (a diffusers StableDiffusionPipeline, 32x32) and DIR/shapes-clip (an
open_clip model folder), then reloads both the way the builder does and records timings and
weight hashes in DIR/train_log.json. Two processes, one thread each (on 2 shared cores two
single-threaded processes got more done than one with two threads):
  1. this process trains the VAE while a second one (train_clip) trains the CLIP;
  2. the text encoder + UNet train data-parallel on both (this process and a `--unet-rank 1`
     worker), each on half of every batch, with averaged gradients.
Seeded: the same seed gives bit-identical weights on the same machine and library versions.
"""
from __future__ import annotations

import os

# Two threads on a machine shared with other jobs: spinning OpenMP workers (the default) made
# steps up to 10x slower whenever the other cores were busy; passive waiting does not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import nets, world  # noqa: E402
from .data import Renderer  # noqa: E402
from .tokenizer import save_tokenizer, world_tokenizer  # noqa: E402
from .train_sd import build_pipeline, encode_scenes, train_unet, train_vae  # noqa: E402


def _rng(seed: int, phase: int) -> np.random.Generator:
    """One stream per phase: changing one phase's length leaves the others' data unchanged."""
    return np.random.default_rng([seed, phase])


def _unet_scenes(args) -> list[world.Scene]:
    """The training scenes whose latents the UNet learns from (each UNet process draws the same)."""
    rng = _rng(args.seed, 2)
    return [world.split_scene(rng, held_out=False) for _ in range(args.latents)]


WORLD_SIZE = 2  # processes training the UNet


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae-steps", type=int, default=1000)
    ap.add_argument("--latents", type=int, default=8000, help="training scenes encoded for the UNet")
    ap.add_argument("--unet-steps", type=int, default=4400)
    ap.add_argument("--unet-batch", type=int, default=32, help="examples per step over both processes")
    ap.add_argument("--clip-steps", type=int, default=1000)
    ap.add_argument("--snapshots", default="", help="development: also save the text-to-image "
                    "pipeline at these UNet steps (comma-separated) under DIR/snapshots/")
    ap.add_argument("--unet-rank", type=int, default=0, help=argparse.SUPPRESS)  # the second UNet process
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out).resolve()
    if args.unet_rank:
        return _unet_worker(args, out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    times = {}

    def log(msg):
        print(f"[{time.time() - t_start:6.0f}s] {msg}", flush=True)

    # The CLIP needs nothing from the text-to-image model: train it beside the VAE.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
    clip_proc = subprocess.Popen([sys.executable, "-m", f"{__package__}.train_clip", "--out", str(out / "shapes-clip"),
                                  "--seed", str(args.seed), "--steps", str(args.clip_steps), "--threads", "1"], env=env)
    tokenizer = world_tokenizer()
    render = Renderer(nets.IMAGE_SIZE)

    t = time.time()
    vae = train_vae(_rng(args.seed, 1), render, args.vae_steps, log=log)
    times["vae_s"] = time.time() - t

    t = time.time()
    scenes = _unet_scenes(args)
    latents = encode_scenes(vae, render, scenes)
    scaling = float(1.0 / latents.std())  # unit-variance latents, as SD's scaling_factor does
    latents = latents * scaling
    torch.save(latents, out / "unet_latents.pt")  # for the second UNet process
    times["encode_s"] = time.time() - t
    log(f"encoded {len(scenes)} scenes, scaling factor {scaling:.4f}; waiting for the CLIP process")

    if clip_proc.wait() != 0:
        raise RuntimeError(f"CLIP training failed (exit code {clip_proc.returncode})")
    times["clip_s"] = json.loads((out / "clip_time.json").read_text())["clip_s"]  # beside the VAE
    t = time.time()
    (out / "ddp_init").unlink(missing_ok=True)  # the rendezvous file must start empty
    own_args = argv if argv is not None else sys.argv[1:]
    worker = subprocess.Popen([sys.executable, "-m", f"{__package__}.train", *own_args,
                               "--unet-rank", "1"], env=env)
    _init_group(out, 0)

    def snapshot(step, unet, te):
        p = build_pipeline(vae, unet, te, tokenizer, scaling)
        p.save_pretrained(out / "snapshots" / f"unet{step}" / "shapes-sd", safe_serialization=True)
        save_tokenizer(tokenizer, out / "snapshots" / f"unet{step}" / "shapes-sd" / "tokenizer")

    snap_steps = {int(s) for s in args.snapshots.split(",") if s}
    unet, text_encoder = _train_unet(args, 0, latents, scenes, tokenizer, log, snapshot, snap_steps)
    if worker.wait() != 0:
        raise RuntimeError(f"the second UNet process failed (exit code {worker.returncode})")
    import torch.distributed as dist

    dist.destroy_process_group()
    (out / "unet_latents.pt").unlink()
    (out / "ddp_init").unlink(missing_ok=True)
    times["unet_s"] = time.time() - t
    pipe = build_pipeline(vae, unet, text_encoder, tokenizer, scaling)
    pipe.save_pretrained(out / "shapes-sd", safe_serialization=True)
    save_tokenizer(tokenizer, out / "shapes-sd" / "tokenizer")
    (out / "clip_time.json").unlink()
    times["total_s"] = time.time() - t_start
    log(f"trained in {times['total_s'] / 60:.1f} min")

    report = {"args": {k: v for k, v in vars(args).items() if k != "unet_rank"},
              "times": {k: round(v, 1) for k, v in times.items()}, **verify(out), "weights": weight_hashes(out)}
    (out / "train_log.json").write_text(json.dumps(report, indent=2) + "\n")
    log(json.dumps({k: report[k] for k in ("times", "load_s", "weights_mb")}))
    return report


def _init_group(out: Path, rank: int) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{out / 'ddp_init'}", rank=rank, world_size=WORLD_SIZE)


def _train_unet(args, rank, latents, scenes, tokenizer, log, snapshot=None, snap_steps=()):
    torch.manual_seed(args.seed + 3)  # module init: the same in every process
    return train_unet(np.random.default_rng([args.seed, 3, rank]), latents, scenes, tokenizer, args.unet_steps,
                      batch=args.unet_batch, log=log if rank == 0 else (lambda m: None), snapshot=snapshot,
                      snapshot_steps=snap_steps, world_size=WORLD_SIZE)


def _unet_worker(args, out: Path) -> dict:
    """The second UNet process: the same model, the other half of each batch; saves nothing."""
    import torch.distributed as dist

    latents = torch.load(out / "unet_latents.pt")
    _init_group(out, args.unet_rank)
    _train_unet(args, args.unet_rank, latents, _unet_scenes(args), world_tokenizer(), log=None)
    dist.destroy_process_group()
    return {}


def weight_hashes(out: Path) -> dict:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for d in ("shapes-sd", "shapes-clip") for p in sorted((out / d).rglob("*.safetensors"))}


def verify(out: Path) -> dict:
    """Reload both models with the builder's own loaders; check the tokenizers and a generation."""
    # Imported before the clock starts: load_s times the loading (README: "Built-in models").
    import open_clip  # noqa: F401
    from diffusers import AutoPipelineForText2Image  # noqa: F401

    from ..loading import load_clip, load_pipeline
    from ..clip import ClipScorer
    from ..generator import ImageGenerator

    t = time.time()
    pipe = load_pipeline(str(out / "shapes-sd"), dtype="float32")
    clip = ClipScorer(load_clip(f"local-dir:{out / 'shapes-clip'}", None))
    load_s = time.time() - t
    for tok in (pipe.tokenizer, clip.bundle.tokenizer.tokenizer):
        for w in world.VOCAB:
            ids = tok(w, add_special_tokens=False).input_ids
            assert len(ids) == 1, f"{w!r} -> {ids}"
    cap = world.caption(world.random_scene(np.random.default_rng(0)))
    img = ImageGenerator(pipe, steps=15, guidance_scale=2.0, resolution=(nets.IMAGE_SIZE,) * 2).generate([cap], [0])
    cos = float(clip.score(img, [cap])[0])
    size = sum(p.stat().st_size for d in ("shapes-sd", "shapes-clip") for p in (out / d).rglob("*.safetensors"))
    return {"load_s": round(load_s, 3), "weights_mb": round(size / 2**20, 2),
            "smoke": {"caption": cap, "oracle_all": bool(world.check(img[0], cap)["all"]), "clip_cos": round(cos, 4)}}


if __name__ == "__main__":
    main()
