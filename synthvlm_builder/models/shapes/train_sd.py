"""Training of the shapes text-to-image model: a VAE, then a text encoder + UNet on its latents."""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from . import nets, world
from .data import Renderer, tokenize


def _lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warmup, then cosine decay to 10% of base."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def train_vae(rng, render: Renderer, steps: int, batch: int = 16, lr: float = 2e-3, log=print):
    """AutoencoderKL on whole 32 px scenes."""
    vae = nets.make_vae()
    # Start with a tiny posterior spread (log-variance -6): with the default init the decoder
    # learns to average over a wide posterior and reconstructions stay blurry.
    with torch.no_grad():
        vae.quant_conv.bias[nets.LATENT_CHANNELS:].fill_(-6.0)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, lr)
        x = render.batch([world.split_scene(rng, held_out=False) for _ in range(batch)])
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        # Objects cover ~10% of the pixels: weight them 5x or the VAE learns backgrounds and
        # luminance long before object colours. L1 keeps flat colours and edges sharp; the KL
        # term only keeps latents bounded.
        w = 1.0 + 4.0 * ((x.amax(1, keepdim=True) - x.amin(1, keepdim=True)) > 0.3).float()
        err = rec - x
        loss = (w * (err.abs() + err.square())).mean() + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"vae step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    return vae.eval()


@torch.no_grad()
def encode_scenes(vae, render: Renderer, scenes, batch: int = 256) -> torch.Tensor:
    """Posterior means of the scenes' latents (unscaled)."""
    return torch.cat([vae.encode(render.batch(scenes[i:i + batch])).latent_dist.mean
                      for i in range(0, len(scenes), batch)])


def train_unet(rng, latents: torch.Tensor, scenes, tokenizer, steps: int, batch: int = 32,
               lr: float = 1e-3, p_uncond: float = 0.1, p_high: float = 0.3, ema_decay: float = 0.995,
               log=print, snapshot=None, snapshot_steps=(), init=None, world_size: int = 1):
    """Text encoder + UNet trained jointly with v-prediction on zero-terminal-SNR noise.

    p_uncond: share of empty captions (classifier-free guidance). p_high: share of timesteps drawn
    from the noisiest 30% of the schedule, where the layout (positions) is decided.
    Returns the EMA weights, which sample more cleanly than the last iterate after short runs.
    init: optional (unet, text_encoder) to continue training (development).
    world_size > 1: data parallel over that many processes (torch.distributed, gloo, already
    initialised): each draws batch / world_size examples from its own `rng` and the gradients are
    averaged, so every process takes the same steps. (A second torch thread made a step no faster;
    a second process halves it.) With two processes the sum is exact in either order: the result
    does not depend on timing.
    """
    from diffusers import DDPMScheduler

    batch //= world_size
    sched = DDPMScheduler(**nets.SCHEDULER_KW)
    if init is None:
        te = nets.make_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                                    tokenizer.pad_token_id)
        unet = nets.make_unet()
    else:
        unet, te = init
        unet.train()
        te.train()
    params = list(unet.parameters()) + list(te.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    T = sched.config.num_train_timesteps
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, lr)
        idx = rng.integers(len(scenes), size=batch)
        caps = ["" if rng.random() < p_uncond else world.caption(scenes[i], rng) for i in idx]
        ids = tokenize(tokenizer, caps, nets.TEXT_LEN)
        z = latents[torch.from_numpy(idx)]
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, T, (batch,), generator=gen)
        high = torch.rand(batch, generator=gen) < p_high
        t = torch.where(high, torch.randint(int(0.7 * T), T, (batch,), generator=gen), t)
        pred = unet(sched.add_noise(z, noise, t), t, encoder_hidden_states=te(ids).last_hidden_state).sample
        loss = F.mse_loss(pred, sched.get_velocity(z, noise, t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world_size > 1:
            _average_gradients(params, world_size)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        d = min(ema_decay, (1 + step) / (10 + step))  # short warmup of the EMA
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - d)
        if step % 200 == 0 or step == steps - 1:
            log(f"unet step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
        if snapshot is not None and step + 1 in snapshot_steps:  # development only
            live = [p.detach().clone() for p in params]
            _load(params, ema)
            snapshot(step + 1, unet, te)
            _load(params, live)
    _load(params, ema)
    return unet.eval(), te.eval()


@torch.no_grad()
def _average_gradients(params, world_size: int) -> None:
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n


@torch.no_grad()
def _load(params, values):
    for p, v in zip(params, values):
        p.copy_(v)


def build_pipeline(vae, unet, text_encoder, tokenizer, scaling_factor: float):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    vae.register_to_config(scaling_factor=float(scaling_factor))
    # DDIM handles the zero-SNR last step exactly (Euler needs a finite sigma there).
    sched = DDIMScheduler(**nets.SCHEDULER_KW)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
