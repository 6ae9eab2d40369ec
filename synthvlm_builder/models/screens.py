"""The image screens' models: the LAION aesthetic head (one weights file) and transformers image
classifiers (NSFW, watermark), loaded from a local path or the Hub like every other model and run on
a batch of decoded published images (uint8 N x H x W x 3) on the build's device; and what the preflight
reads of them without loading them (the head's input size, the classifier's labels). The screens
themselves (stages/screens/) call these."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from ..text import printable
from .preflight import (BrokenModel, ModelUnavailable, check_file_model_available, check_folder_model_available,
                        read_json)
from .ref import LOCAL, ModelRef

HEAD_INPUT = "layers.0.weight"  # the head's first Linear: (1024, input size), as LAION saves it


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
        head = cls(int(state[HEAD_INPUT].shape[1]))
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


def aesthetic_file(model: str, filename: str, revision: str | None, what: str = "the aesthetic head") -> Path:
    """The aesthetic head's weights file on this machine (a Hub file is fetched into the HF cache)."""
    check_file_model_available(model, filename, revision, what)
    ref = ModelRef.parse(model)
    if ref.kind == LOCAL:
        return ref.path()
    from huggingface_hub import hf_hub_download
    try:
        return Path(hf_hub_download(ref.name, filename, revision=revision))
    except Exception as e:  # offline and not cached, transport errors: what loading would hit
        raise ModelUnavailable(f"cannot download the aesthetic head {model!r}: {type(e).__name__}: {e}") from None


def load_aesthetic_head(model: str, filename: str, revision: str | None, device: torch.device):
    path = aesthetic_file(model, filename, revision)
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        return AestheticHead.from_state_dict(state).to(device)
    except (OSError, RuntimeError, KeyError) as e:
        raise ModelUnavailable(f"cannot load the aesthetic head {model!r}: {e}") from e


def aesthetic_input_size(model: str, filename: str, revision: str | None, what: str = "the aesthetic head") -> int:
    """The embedding size the head takes, read from its weights file without building the head: the
    safetensors header, or the (small) state dict of a .pth/.pt. BrokenModel when it is neither."""
    path = aesthetic_file(model, filename, revision, what)
    what = f"the aesthetic head {printable(model)!r}"
    try:
        if path.name.endswith(".safetensors"):
            shape = _safetensors_shapes(path).get(HEAD_INPUT)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            value = state.get(HEAD_INPUT) if isinstance(state, dict) else None
            shape = list(value.shape) if isinstance(value, torch.Tensor) else None
    except BrokenModel:
        raise
    except Exception as e:  # a pickle that is not a state dict raises anything from EOFError to UnpicklingError
        raise BrokenModel(f"{what}: {path} is not a weights file ({type(e).__name__}: {printable(e)})") from None
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) for n in shape)):
        raise BrokenModel(f"{what}: {path} has no 2-d {HEAD_INPUT}: it is not LAION's improved aesthetic"
                          " predictor (an MLP on CLIP image embeddings)")
    return shape[1]


def _safetensors_shapes(path: Path) -> dict:
    """Tensor name -> shape, from a safetensors file's header (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as f:
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < size <= 100_000_000:  # the format caps its header at 100 MB
            raise BrokenModel(f"{path} is not a safetensors file (no header)")
        header = json.loads(f.read(size))
    if not isinstance(header, dict):
        raise BrokenModel(f"{path} is not a safetensors file (its header is not a mapping)")
    return {k: v.get("shape") for k, v in header.items() if isinstance(v, dict)}


def load_image_classifier(model: str, revision: str | None, label: str, device: torch.device):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    check_folder_model_available(model, revision, "the image classifier")
    ref = ModelRef.parse(model)
    source = str(ref.path()) if ref.kind == LOCAL else ref.name
    try:
        processor = AutoImageProcessor.from_pretrained(source, revision=revision)
        classifier = AutoModelForImageClassification.from_pretrained(source, revision=revision)
    except OSError as e:
        raise ModelUnavailable(f"cannot load the image classifier {model!r}: {e}") from e
    return ImageClassifierScreen(classifier, processor, label, device)


def classifier_labels(model: str, revision: str | None) -> dict | None:
    """The id2label of an image classifier's config (None when its config is not at hand);
    BrokenModel when the config is not a JSON object or its id2label not a mapping of ids."""
    ref = ModelRef.parse(model)
    if ref.kind == LOCAL:
        path = ref.path() / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(ref.name, "config.json", revision=revision)
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.is_file():
        return None
    labels = read_json(path, f"the config of the image classifier {printable(model)!r}").get("id2label") or {}
    try:
        return {int(k): str(v) for k, v in dict(labels).items()}
    except (TypeError, ValueError):
        raise BrokenModel(f"the image classifier {printable(model)!r}: {path}: id2label is not a mapping of"
                          " class ids to labels") from None
