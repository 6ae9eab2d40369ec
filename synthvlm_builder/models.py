"""Loading models: diffusers pipelines, open_clip models and caption tokenizers.

A model is one of `builtin:<name>` (see builtin.py), a local directory, or a Hugging Face Hub id.
The `check_*` functions are cheap preflights, run before any work, that turn "this will fail in an
hour" into a `ModelUnavailable` naming the model and what to do. Heavy libraries are imported
inside functions, so `plan`/`validate` can import this module without paying for diffusers.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import builtin

_HUB_TIMEOUT_S = 5.0
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelUnavailable(Exception):
    """A model cannot be loaded; the message names it and says what to do."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """`auto` (cuda, else mps, else cpu), `cpu`, `cuda`, `cuda:N` or `mps`; ValueError if unusable."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available to torch {torch.__version__}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available")
        return device
    raise ValueError(f"unsupported device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")


def torch_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}: expected one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


@dataclass(frozen=True)
class _SchedulerFactory:
    """Builds scheduler `cls_name` from a pipeline's scheduler config, as diffusers' docs swap them."""

    cls_name: str
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def cls(self) -> type:
        import diffusers

        return getattr(diffusers, self.cls_name)

    def __call__(self, config):
        return self.cls.from_config(config, **dict(self.extra))


# The `extra`s pin what the name promises, since from_config would otherwise inherit e.g. karras
# sigmas or a DPM algorithm from a pipeline whose default scheduler already set them.
SCHEDULERS: dict[str, _SchedulerFactory] = {
    "ddim": _SchedulerFactory("DDIMScheduler"),
    "ddpm": _SchedulerFactory("DDPMScheduler"),
    "pndm": _SchedulerFactory("PNDMScheduler"),
    "lms": _SchedulerFactory("LMSDiscreteScheduler"),
    "euler": _SchedulerFactory("EulerDiscreteScheduler"),
    "euler_ancestral": _SchedulerFactory("EulerAncestralDiscreteScheduler"),
    "heun": _SchedulerFactory("HeunDiscreteScheduler"),
    "dpmpp_2m": _SchedulerFactory(
        "DPMSolverMultistepScheduler",
        (("algorithm_type", "dpmsolver++"), ("solver_order", 2), ("use_karras_sigmas", False)),
    ),
    "dpmpp_2m_karras": _SchedulerFactory(
        "DPMSolverMultistepScheduler",
        (("algorithm_type", "dpmsolver++"), ("solver_order", 2), ("use_karras_sigmas", True)),
    ),
    "unipc": _SchedulerFactory("UniPCMultistepScheduler"),
    "deis": _SchedulerFactory("DEISMultistepScheduler"),
    "flow_match_euler": _SchedulerFactory("FlowMatchEulerDiscreteScheduler"),
}


def set_scheduler(pipe, name: str) -> None:
    """Replace `pipe.scheduler` by scheduler `name`, refusing one the model was not trained for.

    diffusers records which schedulers can stand in for each other (`scheduler.compatibles`):
    the epsilon/v-prediction family for SD and SDXL, only flow-matching ones for SD3 and Flux.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")
    current, factory = pipe.scheduler, SCHEDULERS[name]
    if factory.cls not in current.compatibles:
        fitting = sorted(n for n, f in SCHEDULERS.items() if f.cls in current.compatibles)
        raise ValueError(
            f"scheduler {name!r} ({factory.cls_name}) does not fit this {type(pipe).__name__}, whose "
            f"{type(current).__name__} can be replaced by: {', '.join(fitting)}"
        )
    pipe.scheduler = factory(current.config)


# --- availability preflights ------------------------------------------------------------------

def _builtin_name(model: str, known: tuple[str, ...], kind: str) -> str:
    name = model.split(":", 1)[1]
    if name not in known:
        raise ModelUnavailable(
            f"unknown builtin {kind} {model!r}; known: {', '.join('builtin:' + k for k in known)}"
        )
    return name


def _is_local(model: str) -> bool:
    # A Hub id is "name" or "org/name"; anything else that looks like a path is treated as one,
    # so a mistyped directory gets a "directory not found" message instead of a Hub lookup.
    return (os.path.exists(model) or model.startswith(("/", ".", "~"))
            or model.count("/") > 1 or (os.sep != "/" and os.sep in model))


_PIPELINE_FIX = "or point generate.model at a local directory"
_CLIP_FIX = "or set score.clip.pretrained to a local checkpoint file"


def _hub_unavailable(repo_id: str, revision: str | None, reason: str, fix: str, label: str = "") -> ModelUnavailable:
    rev = f" --revision {revision}" if revision else ""
    return ModelUnavailable(
        f"cannot load {label or repr(repo_id)}{f' (revision {revision})' if revision else ''}: {reason}. "
        f"Download it where you have network (`hf download {repo_id}{rev}`) and copy the Hugging Face "
        f"cache here, {fix}."
    )


def _check_hub_file(repo_id: str, filenames: list[str], revision: str | None, fix: str,
                    label: str = "") -> str | None:
    """Path of the first of `filenames` cached for `repo_id@revision`, else None if the Hub will
    serve one of them to this user (a HEAD request); raise ModelUnavailable otherwise."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, is_offline_mode, try_to_load_from_cache
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HFValidationError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    def unavailable(reason: str) -> ModelUnavailable:
        return _hub_unavailable(repo_id, revision, reason, fix, label)

    try:
        for filename in filenames:
            cached = try_to_load_from_cache(repo_id, filename, revision=revision)
            if isinstance(cached, str):
                return cached
    except HFValidationError as e:
        raise ModelUnavailable(f"{repo_id!r} is neither an existing local path nor a valid Hub id: {e}") from None
    if is_offline_mode():
        raise unavailable("not found in the local Hugging Face cache and the Hub cannot be reached "
                          "(offline: HF_HUB_OFFLINE is set)")
    for filename in filenames:
        try:
            get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=_HUB_TIMEOUT_S)
            return None
        except GatedRepoError:  # before RepositoryNotFoundError: it is a subclass
            raise unavailable("the repository is gated: accept its license on the Hub and log in "
                              "(`hf auth login`)") from None
        except RevisionNotFoundError:
            raise unavailable("that revision does not exist on the Hub") from None
        except RepositoryNotFoundError:
            raise unavailable("no such repository on the Hub (or it is private: log in with "
                              "`hf auth login`)") from None
        except EntryNotFoundError:
            continue
        except Exception as e:  # network errors come from httpx and friends, not one base class
            raise unavailable(f"not found in the local Hugging Face cache and the Hub cannot be reached "
                              f"({type(e).__name__}: {e})") from None
    raise ModelUnavailable(f"{label or repr(repo_id)} is on the Hub but has none of {', '.join(filenames)}: "
                           "is it the right kind of repository?")


def check_pipeline_available(model: str, revision: str | None = None) -> None:
    """Fast preflight for `load_pipeline`: raises ModelUnavailable when loading cannot work."""
    from huggingface_hub import is_offline_mode

    if model.startswith("builtin:"):
        _builtin_name(model, builtin.PIPELINES, "pipeline")
        return
    if _is_local(model):
        index = Path(model).expanduser() / "model_index.json"
        if not index.is_file():
            raise ModelUnavailable(
                f"cannot load {model!r}: {index} not found; a diffusers pipeline directory holds one "
                "(write one with `pipe.save_pretrained(dir)`)"
            )
        return
    cached = _check_hub_file(model, ["model_index.json"], revision, _PIPELINE_FIX)
    if cached and is_offline_mode():
        # A cached model_index.json does not mean cached weights: name the missing components.
        components = [k for k, v in json.loads(Path(cached).read_text()).items()
                      if not k.startswith("_") and isinstance(v, list) and v[0] is not None]
        missing = [c for c in components if not (Path(cached).parent / c).is_dir()]
        if missing:
            raise _hub_unavailable(model, revision, f"only partly in the local Hugging Face cache (missing "
                                   f"{', '.join(missing)}) and the Hub cannot be reached (offline)", _PIPELINE_FIX)


def check_clip_available(model: str, pretrained: str | None) -> None:
    """Fast preflight for `load_clip`: raises ModelUnavailable when loading cannot work."""
    if model.startswith("builtin:"):
        _builtin_name(model, builtin.CLIP_MODELS, "CLIP model")
        return
    if model.startswith("hf-hub:"):
        _check_hub_file(model[len("hf-hub:"):], ["open_clip_config.json"], None, _CLIP_FIX, f"CLIP model {model!r}")
        return
    if model.startswith("local-dir:"):
        config = Path(model[len("local-dir:"):]).expanduser() / "open_clip_config.json"
        if not config.is_file():
            raise ModelUnavailable(f"cannot load CLIP model {model!r}: {config} not found")
        return
    import open_clip

    model = model.replace("/", "-")  # open_clip's own normalisation: "ViT-B/32" is "ViT-B-32"
    if model not in open_clip.list_models():
        raise ModelUnavailable(f"unknown open_clip architecture {model!r}; see open_clip.list_models()")
    if not pretrained:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none known"
        raise ModelUnavailable(f"no weights given for CLIP model {model!r}: set score.clip.pretrained "
                               f"to a tag ({tags}) or a checkpoint file")
    if os.path.isfile(pretrained):
        return
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        if _is_local(pretrained) or pretrained.endswith((".safetensors", ".bin", ".pt", ".pth", ".npz")):
            raise ModelUnavailable(f"CLIP checkpoint file {pretrained!r} not found")
        raise ModelUnavailable(f"unknown pretrained tag {pretrained!r} for {model!r}; known: "
                               f"{', '.join(open_clip.list_pretrained_tags_by_model(model))}")
    if not cfg.get("hf_hub"):
        return  # URL-only (none in open_clip 3.3): open_clip fetches it itself; nothing cheap to check
    # Mirrors open_clip.pretrained.download_pretrained, which prefers the Hub copy:
    # "org/repo/[file]", safetensors first.
    repo_id, filename = os.path.split(cfg["hf_hub"])
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    _check_hub_file(repo_id, names, None, _CLIP_FIX, f"CLIP {model}/{pretrained} (weights in {repo_id!r})")


# --- loaders ----------------------------------------------------------------------------------

def load_pipeline(model: str, *, revision: str | None = None, dtype: str = "float32",
                  scheduler: str | None = None, device: str | torch.device = "cpu",
                  variant: str | None = None, compile: bool = False):
    """A text-to-image diffusers pipeline, on `device`, progress bar off.

    AutoPipelineForText2Image rather than DiffusionPipeline: both read `_class_name` from
    model_index.json, but the auto class maps img2img/inpainting repos of SD, SDXL and SD3 to their
    text-to-image pipeline and rejects repos with no text-to-image counterpart up front.
    """
    check_pipeline_available(model, revision)
    device = resolve_device(device)
    source: str | Path = model
    if model.startswith("builtin:"):
        # Builtins are versioned by this package (builtin.py), not by a Hub revision or variant.
        source, revision, variant = builtin.builtin_dir(model.split(":", 1)[1]), None, None
    import diffusers
    from packaging.version import Version

    # diffusers 0.42 renamed torch_dtype to dtype (the old name warns); older releases would
    # silently ignore `dtype` and load float32.
    dtype_kw = "dtype" if Version(diffusers.__version__) >= Version("0.42") else "torch_dtype"
    try:
        pipe = diffusers.AutoPipelineForText2Image.from_pretrained(
            source, revision=revision, variant=variant, **{dtype_kw: torch_dtype(dtype)})
    except OSError as e:  # hub/cache errors, incl. offline and missing variant files, are OSErrors
        raise ModelUnavailable(f"cannot load {model!r}{f' (revision {revision})' if revision else ''}: {e}") from e
    if scheduler is not None:
        set_scheduler(pipe, scheduler)
    if getattr(pipe, "watermark", None) is not None:
        # SDXL silently watermarks outputs whenever `invisible-watermark` happens to be installed;
        # images must not depend on an optional package (and the watermark costs SSIM).
        pipe.watermark = None
    pipe = pipe.to(device)  # attention is SDPA by default in diffusers >= 0.2x: nothing to set
    pipe.set_progress_bar_config(disable=True)
    if compile:
        name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
        denoiser = getattr(pipe, name)
        if device.type == "cuda":
            denoiser.to(memory_format=torch.channels_last)  # faster convolutions under compile
        setattr(pipe, name, torch.compile(denoiser))
    return pipe


@dataclass(frozen=True)
class ClipBundle:
    """An open_clip model with what scoring needs to use it exactly as open_clip would."""

    model: torch.nn.Module
    tokenizer: Callable  # open_clip tokenizer: list[str] -> LongTensor (N, context_length)
    preprocess: dict  # open_clip PreprocessCfg: size, mean, std, interpolation, resize_mode, fill_color
    transform: Callable  # open_clip's own PIL inference transform (the reference for preprocess)
    device: torch.device


def load_clip(model: str, pretrained: str | None, device: str | torch.device = "cpu") -> ClipBundle:
    import open_clip

    check_clip_available(model, pretrained)
    device = resolve_device(device)
    name = model
    if model.startswith("builtin:"):
        folder = builtin.builtin_dir(model.split(":", 1)[1])
        if builtin.CLIP_MODEL_NAME not in open_clip.list_models():
            open_clip.add_model_config(folder / builtin.CLIP_CONFIG_FILE)
        name, pretrained = builtin.CLIP_MODEL_NAME, str(folder / builtin.CLIP_WEIGHTS_FILE)
    try:
        clip, _, transform = open_clip.create_model_and_transforms(
            name, pretrained=None if name.startswith(("hf-hub:", "local-dir:")) else pretrained, device=device)
    except (OSError, RuntimeError) as e:  # open_clip wraps download failures in RuntimeError
        raise ModelUnavailable(f"cannot load CLIP model {model!r} (pretrained {pretrained!r}): {e}") from e
    clip.eval()
    return ClipBundle(clip, open_clip.get_tokenizer(name), dict(clip.visual.preprocess_cfg), transform, device)


class CaptionTokenizer:
    """Counts and truncates captions in the tokens the pipeline's (first) text encoder sees."""

    def __init__(self, hf_tokenizer):
        self._hf = hf_tokenizer
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is not None:
            # A private copy of the Rust tokenizer without padding/truncation, called directly:
            # count() runs on every caption, and this skips the transformers wrapper (~30% faster).
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
        self._backend = backend
        self.model_max_length = hf_tokenizer.model_max_length
        self._n_special = self.count("")

    def count(self, text: str) -> int:
        """Tokens including the begin/end specials (so CLIP's limit is 77)."""
        if self._backend is not None:
            return len(self._backend.encode(text).ids)
        return len(self._hf(text)["input_ids"])

    def counts(self, texts: list[str]) -> list[int]:
        """`count` for many texts in one call (threaded in Rust unless TOKENIZERS_PARALLELISM=false,
        which importing open_clip sets)."""
        if self._backend is not None:
            return [len(e.ids) for e in self._backend.encode_batch(texts)]
        return [self.count(t) for t in texts]

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text`, cut between tokens, whose count() is <= max_tokens."""
        keep = max_tokens - self._n_special
        if keep < 0:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for the {self._n_special} special tokens")
        if self.count(text) <= max_tokens:
            return text
        if self._backend is None:
            ids = self._hf(text, add_special_tokens=False)["input_ids"]
            cut = lambda k: self._hf.decode(ids[:k], skip_special_tokens=True)  # noqa: E731
        else:
            # Cut the original string at a token's end offset: keeps the caption's own casing and
            # spacing, which decoding (lower-cased, " ." for ".") would not.
            offsets = self._backend.encode(text, add_special_tokens=False).offsets
            cut = lambda k: text[: offsets[k - 1][1]].rstrip() if k else ""  # noqa: E731
        out = cut(keep)
        # Re-tokenising a prefix can split its last word differently; step back until it fits.
        while keep > 0 and self.count(out) > max_tokens:
            keep -= 1
            out = cut(keep)
        return out


def caption_tokenizer(model: str, revision: str | None = None) -> CaptionTokenizer:
    """The tokenizer of `model`'s first text encoder, loaded without any weights."""
    if model.startswith("builtin:"):
        _builtin_name(model, builtin.PIPELINES, "pipeline")
        return CaptionTokenizer(builtin.clip_tokenizer())
    check_pipeline_available(model, revision)
    from huggingface_hub import snapshot_download
    from transformers import AutoTokenizer

    try:
        # Fetch (or find cached) only tokenizer/ and load it as a local folder: AutoTokenizer on a
        # Hub id first looks for a config.json, which SD's tokenizer/ lacks, and offline that
        # lookup fails unless an earlier online run happened to cache the miss.
        root = model if _is_local(model) else snapshot_download(
            model, revision=revision, allow_patterns=["tokenizer/*"])
        return CaptionTokenizer(AutoTokenizer.from_pretrained(Path(root).expanduser() / "tokenizer"))
    except OSError as e:
        raise ModelUnavailable(f"cannot load the tokenizer of {model!r}: {e}") from e
