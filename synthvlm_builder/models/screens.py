"""Loading the image screens' models: the LAION aesthetic head (one weights file) and transformers
image classifiers (NSFW, watermark), from a local path or the Hub, like every other model."""
from __future__ import annotations

import torch

from .preflight import ModelUnavailable, check_file_model_available, check_folder_model_available
from .ref import LOCAL, ModelRef


def load_aesthetic_head(model: str, filename: str, revision: str | None, device: torch.device):
    from ..stages.screen import AestheticHead

    check_file_model_available(model, filename, revision, "the aesthetic head")
    ref = ModelRef.parse(model)
    if ref.kind == LOCAL:
        path = ref.path()
    else:
        from huggingface_hub import hf_hub_download
        path = hf_hub_download(ref.name, filename, revision=revision)
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        return AestheticHead.from_state_dict(state).to(device)
    except (OSError, RuntimeError, KeyError) as e:
        raise ModelUnavailable(f"cannot load the aesthetic head {model!r}: {e}") from e


def load_image_classifier(model: str, revision: str | None, label: str, device: torch.device):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from ..stages.screen import ImageClassifierScreen

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
    """The id2label of an image classifier's config (None when its config is not at hand)."""
    import json
    from pathlib import Path

    ref = ModelRef.parse(model)
    if ref.kind == LOCAL:
        path = ref.path() / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(ref.name, "config.json", revision=revision)
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.is_file():
        return None
    return {int(k): str(v) for k, v in (json.loads(path.read_text()).get("id2label") or {}).items()}
