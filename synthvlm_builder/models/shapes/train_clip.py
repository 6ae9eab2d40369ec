"""Contrastive training of the shapes open_clip model, with hard negatives in every batch.

`python -m shapes.train_clip --out DIR/shapes-clip` trains it alone; shapes.train runs it this
way in a second process, next to the text-to-image training (one thread each: on 2 shared cores
two single-threaded processes got more done than one process with two threads).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train.py

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from . import contrastive, nets, world  # noqa: E402
from .data import Renderer, tokenize  # noqa: E402
from .negatives import hard_negative  # noqa: E402
from .tokenizer import save_tokenizer, world_tokenizer  # noqa: E402

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (sigma 0 = identity) with a 5x5 kernel."""
    r = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-r[None] ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (N, 5); sigma -> 0 gives a delta
    n, c, h, w = x.shape
    y = x.reshape(1, n * c, h, w)
    kk = k.repeat_interleave(c, 0)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kk[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kk[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Make clean renders look like generated ones: blur, colour drift, noise, small shifts.

    x: float (N, 3, H, W) in [0, 1]. Generated images are softer and off by some levels; a CLIP
    that only saw crisp renders judged them by their blur instead of their content.
    """
    n = x.shape[0]
    sigma = torch.rand(n, generator=gen) * 1.2 * (torch.rand(n, generator=gen) < 0.7)
    x = _blur(x, sigma)
    gain = 1 + 0.08 * (2 * torch.rand(n, 3, 1, 1, generator=gen) - 1)
    bias = 0.05 * (2 * torch.rand(n, 3, 1, 1, generator=gen) - 1)
    x = x * gain + bias + torch.randn(x.shape, generator=gen) * 0.04 * torch.rand(n, 1, 1, 1, generator=gen)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    x = torch.roll(F.pad(x, (2, 2, 2, 2), mode="replicate"), (dy, dx), (2, 3))[..., 2:-2, 2:-2]
    return x.clamp(0, 1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def train_clip(rng, render: Renderer, tokenizer, steps: int, batch: int = 64, lr: float = 1e-3, log=print):
    """open_clip CLIP trained on `batch` scenes plus one hard negative of each per step.

    The negatives are ordinary batch members (their own caption is their positive), so the
    symmetric InfoNCE loss pushes every image away from its near-miss caption and every caption
    away from its near-miss image: the second direction is what best-of-k selection uses.
    """
    import open_clip

    model = open_clip.CLIP(**nets.clip_model_cfg(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id))
    opt = contrastive.adamw(model, lr, 0.05)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    labels = torch.arange(2 * batch)
    t0 = time.time()
    for step in range(steps):
        warm = min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr * warm * contrastive.cosine(step, steps)
        scenes = [world.split_scene(rng, held_out=False) for _ in range(batch)]
        # A negative's caption names positions exactly when its anchor's does (else a moved
        # object would give the anchor's own caption).
        placed = [bool(rng.random() >= world.P_NO_POSITION) for _ in scenes] * 2
        scenes += [hard_negative(s, rng, p) for s, p in zip(scenes, placed)]
        x = normalize(augment((render.batch(scenes) + 1) / 2, gen))
        ids = tokenize(tokenizer, [world.caption(s, rng, p) for s, p in zip(scenes, placed)], nets.TEXT_LEN)
        logits, loss = contrastive.step(model, opt, x, ids, labels)
        if step % 200 == 0 or step == steps - 1:
            acc = (logits.argmax(1) == labels).float().mean().item()
            log(f"clip step {step} loss {loss.item():.4f} i2t acc {acc:.3f} ({time.time() - t0:.0f}s)")
    return model.eval()


def save_clip(model, tokenizer, folder: str | Path) -> None:
    """An open_clip model folder: open_clip_config.json, weights, and the HF tokenizer files.

    Loads with open_clip.create_model_and_transforms("local-dir:<folder>") and
    open_clip.get_tokenizer("local-dir:<folder>") (text_cfg.hf_tokenizer_name makes open_clip
    read the tokenizer from the folder itself).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model_cfg": nets.clip_model_cfg(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id),
        # 32 px in, 32 px model: open_clip's shortest-side resize + centre crop are no-ops.
        "preprocess_cfg": {"size": nets.IMAGE_SIZE, "mean": list(MEAN), "std": list(STD),
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    save_tokenizer(tokenizer, folder)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train the shapes open_clip model")
    ap.add_argument("--out", required=True, help="the model folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    tokenizer = world_tokenizer()
    torch.manual_seed(args.seed + 4)  # module init
    model = train_clip(np.random.default_rng([args.seed, 4]), Renderer(), tokenizer, args.steps,
                       log=lambda m: print(f"[clip] {m}", flush=True))
    save_clip(model, tokenizer, args.out)
    (Path(args.out).parent / "clip_time.json").write_text(json.dumps({"clip_s": round(time.time() - t0, 1)}) + "\n")


if __name__ == "__main__":
    main()
