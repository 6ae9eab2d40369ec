"""The proxy model of `evaluate`: a small open_clip CLIP trained from scratch on image-caption pairs for a
fixed budget, then zero-shot retrieval on a held-out set.

The architecture is the shapes-world CLIP's (models/shapes/nets.py `clip_model_cfg`: a ViT on 8x8 patches
and a small text tower) with its sizes configurable (`ProxyConfig`); the training is the shapes CLIP's
(models/shapes/train_clip.py: AdamW with decay on matrices only, linear warm-up then cosine decay to a tenth,
symmetric InfoNCE, the logit scale clamped at 100) on the dataset's pairs alone: without its hard negatives
(scenes rendered by the world, which would add ground truth the dataset does not hold) and its augmentations.
Batches walk seeded permutations of the pairs.

torch and open_clip only (no scipy, no datasets), so the same code runs on a GPU machine for real-sized
evaluations. Deterministic for a fixed seed and thread count on a CPU; on CUDA, with
`torch.use_deterministic_algorithms` (and the cuBLAS workspace setting it needs).
"""
from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass

import numpy as np

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; read when CUDA starts

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # the shapes CLIP's normalisation (train_clip.py)


@dataclass(frozen=True)
class ProxyConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    image_size: int = 32      # images are resized (shorter side) and centre-cropped to this
    patch_size: int = 4
    width: int = 96           # both towers, and the embedding
    layers: int = 3           # vision layers; the text tower has 2 (nets.py)
    weight_decay: float = 0.05

    @property
    def warmup(self) -> int:
        return max(1, min(100, self.steps // 10))

    def to_dict(self) -> dict:
        return asdict(self)


class Tokens:
    """Captions to token ids: the shapes world's word-level tokenizer for its captions (every world word one
    token, models/shapes/tokenizer.py), else open_clip's CLIP BPE (shipped inside open_clip, no download)."""

    def __init__(self, shapes_world: bool, context: int = 32):
        if shapes_world:
            from ..models.shapes import nets
            from ..models.shapes.tokenizer import world_tokenizer
            self.tokenizer = world_tokenizer()
            self.name, self.context = "shapes-world word-level", nets.TEXT_LEN
            self.vocab_size = len(self.tokenizer)
            self.eos_id, self.pad_id = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        else:
            from open_clip.tokenizer import SimpleTokenizer
            self.tokenizer = SimpleTokenizer(context_length=context)
            self.name, self.context = "open_clip CLIP BPE", context
            self.vocab_size, self.eos_id, self.pad_id = self.tokenizer.vocab_size, self.tokenizer.eot_token_id, 0
        self.shapes_world = shapes_world

    def __call__(self, captions: list[str]):
        if self.shapes_world:
            from ..models.shapes.data import tokenize
            return tokenize(self.tokenizer, captions, self.context)
        return self.tokenizer(captions)


def model_cfg(cfg: ProxyConfig, tokens: Tokens) -> dict:
    from ..models.shapes import nets
    out = nets.clip_model_cfg(tokens.vocab_size, tokens.eos_id, tokens.pad_id)
    out["embed_dim"] = cfg.width
    out["vision_cfg"].update(image_size=cfg.image_size, patch_size=cfg.patch_size, width=cfg.width, layers=cfg.layers)
    out["text_cfg"].update(context_length=tokens.context, width=cfg.width)
    out["text_cfg"].pop("hf_tokenizer_name")  # a flag for open_clip's folder loader; nothing is loaded here
    return out


def image_tensor(images: list, size: int):
    """uint8 (N, 3, size, size) from encoded image bytes or HxWx3 arrays: the shorter side resized to `size`
    (bicubic), then centre-cropped."""
    import torch
    from PIL import Image
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        im = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else Image.fromarray(np.asarray(image))
        im = im.convert("RGB")
        if im.size != (size, size):
            scale = size / min(im.size)
            im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))),
                           Image.Resampling.BICUBIC)
            left, top = (im.width - size) // 2, (im.height - size) // 2
            im = im.crop((left, top, left + size, top + size))
        out[i] = np.asarray(im)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _normalize(x, device):
    import torch
    x = x.to(device).float().div_(255)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def train(images, ids, cfg: ProxyConfig, arch: dict, seed: int, device: str = "cpu", groups=None):
    """A fresh CLIP trained on (images uint8 NCHW, ids) for cfg.steps batches; returns it in eval mode.

    `groups` (one id per pair; evaluate.groups: pairs that share a caption or an image) keeps pairs of one
    group from being each other's negatives: two images of one caption are not a mismatch to push apart
    (datasets repeat captions: the world's one-object scenes, best-of-k rows of one prompt)."""
    import open_clip
    import torch

    from ..models.shapes import contrastive
    if torch.device(device).type == "cuda":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)  # the initial weights
    model = open_clip.CLIP(**arch).to(device)
    opt = contrastive.adamw(model, cfg.lr, cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = len(images)
    batch = min(cfg.batch_size, n)
    labels = torch.arange(batch, device=device)
    groups = torch.as_tensor(np.arange(n) if groups is None else np.asarray(groups))
    order, at = torch.randperm(n, generator=gen), 0
    model.train()
    for step in range(cfg.steps):
        if at + batch > n:  # a new epoch: a new permutation; the tail of the old one is skipped
            order, at = torch.randperm(n, generator=gen), 0
        idx = order[at:at + batch]
        at += batch
        scale = min(1.0, (step + 1) / cfg.warmup) * contrastive.cosine(step, cfg.steps)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * scale
        g = groups[idx]
        same = (g[:, None] == g[None, :]) & ~torch.eye(batch, dtype=torch.bool)  # not negatives
        contrastive.step(model, opt, _normalize(images[idx], device), ids[idx].to(device), labels, same.to(device))
    return model.eval()


def embed(model, images, ids, device: str = "cpu", batch: int = 256):
    """L2-normalised image and text embeddings (float32, on the CPU)."""
    import torch
    import torch.nn.functional as F
    img, txt = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            img.append(F.normalize(model.encode_image(_normalize(images[start:start + batch], device)), dim=-1).cpu())
            txt.append(F.normalize(model.encode_text(ids[start:start + batch].to(device)), dim=-1).cpu())
    return torch.cat(img).float(), torch.cat(txt).float()


def retrieval(img, txt, relevant: np.ndarray, ks=(1, 5)) -> tuple[dict, np.ndarray]:
    """Recall@k both ways among the held-out pairs: the share of images whose k best captions hold a right
    one, and of captions whose k best images do (relevant[i, j]: caption j is right for image i). Returns
    the metrics and each caption's best image."""
    import torch
    sim = img @ txt.T  # sim[i, j]: image i, caption j
    right = torch.from_numpy(np.asarray(relevant, dtype=bool))
    out = {}
    k_max = min(max(ks), sim.shape[0])
    i2t = sim.topk(k_max, dim=1).indices          # per image, captions best first
    t2i = sim.T.topk(k_max, dim=1).indices        # per caption, images best first
    for name, ranked, hits in (("i2t", i2t, right), ("t2i", t2i, right.T)):
        for k in ks:
            out[f"{name}_r{k}"] = float(hits.gather(1, ranked[:, :min(k, k_max)]).any(1).float().mean())
    return out, t2i[:, 0].numpy()
