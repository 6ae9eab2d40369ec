"""CLIP training, the parts two trainers share: the shapes CLIP's own training (train_clip.py) and the
proxy CLIP `evaluate` trains on a dataset (analysis/proxy.py). AdamW with weight decay on weight matrices
only, a cosine learning-rate decay to a tenth, and one step of symmetric InfoNCE with the logit scale
clamped to at most 100, as open_clip's training does."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def adamw(model, lr: float, weight_decay: float):
    """AdamW decaying the weight matrices, not the embeddings, biases, norms or the logit scale."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=lr)


def cosine(step: int, steps: int) -> float:
    """The learning rate's factor at `step` of `steps`: from 1 down to 0.1 on a half cosine."""
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps))


def step(model, opt, x, ids, labels, not_negative=None):
    """One optimiser step on images `x` and token ids `ids` (pair i is image i with caption i); returns
    (logits, loss). `not_negative` (bool, batch x batch) masks pairs that must not be pushed apart."""
    img = F.normalize(model.encode_image(x), dim=-1)
    txt = F.normalize(model.encode_text(ids), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.T
    if not_negative is not None:
        logits = logits.masked_fill(not_negative, float("-inf"))
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return logits, loss
