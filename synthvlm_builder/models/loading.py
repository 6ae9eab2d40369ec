"""Loading models: diffusers pipelines, open_clip models and caption tokenizers.

A model is one of `builtin:<name>` (see builtin.py), a local directory, or a Hugging Face Hub id.
The `check_*` functions are cheap preflights, run before any work, that turn "this will fail in an
hour" into a `ModelUnavailable` naming the model and what to do. Heavy libraries are imported
inside functions, so `plan`/`validate` can import this module without paying for diffusers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import builtin
from .preflight import ModelUnavailable, check_clip_available, check_pipeline_available
from .ref import BUILTIN, HUB, LOCAL, ModelRef

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
    ok, fitting = scheduler_fits(type(current), name)
    if not ok:
        raise ValueError(
            f"scheduler {name!r} ({factory.cls_name}) does not fit this {type(pipe).__name__}, whose "
            f"{type(current).__name__} can be replaced by: {', '.join(fitting)}"
        )
    pipe.scheduler = factory(current.config)


def scheduler_fits(current_cls: type, name: str) -> tuple[bool, list[str]]:
    """Whether scheduler `name` can replace a `current_cls` scheduler, and the names that can."""
    compatibles = current_cls().compatibles  # a default instance: diffusers exposes the list per instance
    fitting = sorted(n for n, f in SCHEDULERS.items() if f.cls in compatibles)
    return SCHEDULERS[name].cls in compatibles, fitting


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
    ref = ModelRef.parse(model)
    source: str | Path = ref.path() if ref.kind == LOCAL else ref.name
    if ref.kind == BUILTIN:
        # Builtins are versioned by this package (builtin.py), not by a Hub revision or variant.
        source, revision, variant = builtin.builtin_dir(ref.name), None, None
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


def open_clip_name(model: str, pretrained: str | None) -> tuple[str, str | None]:
    """The (model name, pretrained) open_clip is given for a recipe's CLIP model: a builtin is a
    `local-dir:` folder or a registered tiny config, a folder or Hub repo carries its own weights."""
    import open_clip

    ref = ModelRef.parse(model, clip=True)
    if ref.kind == BUILTIN and ref.name in builtin.SHIPPED:
        return f"local-dir:{builtin.builtin_dir(ref.name)}", None  # an open_clip model folder
    if ref.kind == BUILTIN:
        folder = builtin.builtin_dir(ref.name)
        if builtin.CLIP_MODEL_NAME not in open_clip.list_models():
            open_clip.add_model_config(folder / builtin.CLIP_CONFIG_FILE)
        return builtin.CLIP_MODEL_NAME, str(folder / builtin.CLIP_WEIGHTS_FILE)
    if ref.kind == LOCAL:
        return f"local-dir:{ref.path()}", None
    return model, None if ref.kind == HUB else pretrained  # open_clip reads its own hf-hub: prefix


def load_clip(model: str, pretrained: str | None, device: str | torch.device = "cpu") -> ClipBundle:
    import open_clip

    check_clip_available(model, pretrained)
    device = resolve_device(device)
    name, weights = open_clip_name(model, pretrained)
    try:
        clip, _, transform = open_clip.create_model_and_transforms(name, pretrained=weights, device=device)
    except (OSError, RuntimeError) as e:  # open_clip wraps download failures in RuntimeError
        raise ModelUnavailable(f"cannot load CLIP model {model!r} (pretrained {pretrained!r}): {e}") from e
    clip.eval()
    return ClipBundle(clip, open_clip.get_tokenizer(name), dict(clip.visual.preprocess_cfg), transform, device)
