"""Image screens computed on every generated image before it is written anywhere: the LAION aesthetic
predictor (a head on a CLIP image embedding), image-classification models for NSFW and watermarks
(any transformers `AutoModelForImageClassification`), and the perceptual hash for near-duplicates.

All take the decoded published images (uint8 N x H x W x 3) a batch at a time, on the build's device.
"""
from __future__ import annotations

import numpy as np
import torch


class AestheticHead(torch.nn.Module):
    """LAION's improved-aesthetic-predictor MLP (its `layers` keys, so its released weights load as is):
    input_size -> 1024 -> 128 -> 64 -> 16 -> 1, on L2-normalised CLIP image embeddings."""

    def __init__(self, input_size: int):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(input_size, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
            torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16),
            torch.nn.Linear(16, 1))

    @classmethod
    def from_state_dict(cls, state: dict) -> "AestheticHead":
        head = cls(int(state["layers.0.weight"].shape[1]))
        head.load_state_dict(state)
        return head.eval()

    @property
    def input_size(self) -> int:
        return self.layers[0].in_features

    @torch.inference_mode()
    def score(self, image_emb: torch.Tensor) -> np.ndarray:
        """float32 aesthetic scores from normalised embeddings (N, input_size)."""
        weight = self.layers[0].weight
        return self.layers(image_emb.to(weight.device, weight.dtype)).squeeze(-1).float().cpu().numpy()


class ImageClassifierScreen:
    """The probability of one label of a transformers image classifier, for each image."""

    def __init__(self, model, processor, label: str, device: torch.device):
        self.index = label_index(model.config.id2label, label)
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device

    @torch.inference_mode()
    def score(self, images: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=list(images), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
        logits = self.model(pixel_values=pixels).logits.float()
        return torch.softmax(logits, dim=-1)[:, self.index].cpu().numpy().astype(np.float32)


def label_index(id2label: dict, label: str) -> int:
    """The output index of `label`: a label name (any case) or its index as digits."""
    labels = {str(name).lower(): int(i) for i, name in id2label.items()}
    if label.isdigit() and int(label) in labels.values():
        return int(label)
    if label.lower() not in labels:
        raise ValueError(f"the model has no label {label!r}; its labels: {', '.join(sorted(labels))}")
    return labels[label.lower()]


def phashes(images: np.ndarray) -> list[str]:
    """imagehash's 64-bit perceptual hash of each image, as 16 hex digits."""
    import imagehash
    from PIL import Image

    return [str(imagehash.phash(Image.fromarray(np.ascontiguousarray(im)))) for im in images]
