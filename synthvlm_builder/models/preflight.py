"""Availability preflights: cheap checks, run before any work, that turn "this will fail in
an hour" into a ModelUnavailable naming the model and what to do (cached? on the Hub? gated?).

A local folder is opened far enough to know loading it can work, without reading any weights:
its configs parse, and every component a pipeline's model_index.json names is there with its
config and a weights file (BrokenModel: the recipe points at something incomplete, bad input).
"""
from __future__ import annotations

from contextlib import contextmanager

import json
import os
from pathlib import Path

from ..text import printable
from . import builtin
from .ref import BUILTIN, HUB, LOCAL, ModelRef, pretrained_is_file

_HUB_TIMEOUT_S = 5.0
# What weights files are called: diffusers and transformers (safetensors, pickles, flax, ONNX) and
# open_clip (.pth); sharded weights are several of these, so one is enough to tell weights are here.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".gguf")
# Where transformers keeps an image processor's settings (processor_config.json: a multimodal processor's).
PROCESSOR_CONFIGS = ("preprocessor_config.json", "processor_config.json")
# A component that is not a model, by its class name: the file loading it needs (any one of them).
_NON_MODEL_FILES = (("Scheduler", ("scheduler_config.json",)),
                    ("Tokenizer", ("tokenizer_config.json", "tokenizer.json", "vocab.json", "spiece.model",
                                   "tokenizer.model", "vocab.txt")),
                    ("Processor", PROCESSOR_CONFIGS), ("FeatureExtractor", PROCESSOR_CONFIGS))


class ModelUnavailable(Exception):
    """A model cannot be loaded; the message names it and says what to do."""


class BrokenModel(ModelUnavailable):
    """A model's files are at hand but incomplete or unreadable: bad input at the recipe field that
    names it (exit 2), where a model the Hub cannot serve now is a runtime failure (exit 1)."""


def read_json(path: Path, what: str) -> dict:
    """A model's JSON config as a mapping, or BrokenModel naming the file and what is wrong with it."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as e:
        raise BrokenModel(f"cannot read {what}: {path}: {e.strerror or e}") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are
        raise BrokenModel(f"{what}: {path} is not JSON ({printable(e)})") from None
    if not isinstance(data, dict):
        raise BrokenModel(f"{what}: {path} holds a JSON {type(data).__name__}, not an object")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The non-empty weights files directly in `folder`."""
    return [p for p in sorted(folder.iterdir()) if p.name.endswith(WEIGHT_SUFFIXES) and p.is_file()
            and p.stat().st_size > 0] if folder.is_dir() else []


def check_pipeline_folder(root: Path, label: str) -> None:
    """Every component model_index.json names is in `root` with what loading it needs: a model its
    config.json and a weights file; a scheduler, tokenizer or processor its config. Reads no weights."""
    index = read_json(root / "model_index.json", f"the model index of {label}")
    problems = []
    for name, spec in index.items():
        if name.startswith("_") or not (isinstance(spec, list) and len(spec) == 2 and spec[1]):
            continue  # metadata, or an optional component left out ([null, null])
        problem = _component_problem(root / name, str(spec[1]))
        if problem:
            problems.append(f"{name}/ {problem}")
    if problems:
        raise BrokenModel(f"cannot load {label}: {'; '.join(problems)} (model_index.json names every component;"
                          " `pipe.save_pretrained(dir)` writes a complete folder)")


def _component_problem(folder: Path, cls: str) -> str | None:
    if not folder.is_dir():
        return "is missing"
    if not os.access(folder, os.R_OK | os.X_OK):
        return "cannot be read (permissions)"
    for marker, files in _NON_MODEL_FILES:
        if marker in cls:
            return None if any((folder / f).is_file() for f in files) else f"has none of {', '.join(files)}"
    if not (folder / "config.json").is_file():
        return "has no config.json"
    read_json(folder / "config.json", f"the {folder.name} config")
    return None if weight_files(folder) else f"has no weights file ({', '.join(WEIGHT_SUFFIXES[:2])}, ...)"


def builtin_name(ref: ModelRef, known: tuple[str, ...], kind: str) -> str:
    """The name of a builtin reference, checked against the names this package ships."""
    if ref.name not in known:
        raise ModelUnavailable(
            f"unknown builtin {kind} {str(ref)!r}; known: {', '.join('builtin:' + k for k in known)}"
        )
    return ref.name


_PIPELINE_FIX = "or point generate.model at a local directory"
_CLIP_FIX = "or set score.clip.pretrained to a local checkpoint file"


def _hub_unavailable(repo_id: str, revision: str | None, reason: str, fix: str, label: str = "") -> ModelUnavailable:
    rev = f" --revision {revision}" if revision else ""
    return ModelUnavailable(
        f"cannot load {label or repr(repo_id)}{f' (revision {revision})' if revision else ''}: {reason}. "
        f"Download it where you have network (`hf download {repo_id}{rev}`) and copy the Hugging Face "
        f"cache here, {fix}."
    )


def check_hub_file(repo_id: str, filenames: list[str], revision: str | None, fix: str,
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

    ref = ModelRef.parse(model)
    if ref.kind == BUILTIN:
        builtin_name(ref, builtin.PIPELINES, "pipeline")
        if ref.name in builtin.SHIPPED:
            check_pipeline_folder(builtin.builtin_dir(ref.name), model)
        return
    if ref.kind == LOCAL:
        index = ref.path() / "model_index.json"
        if not index.is_file():
            raise ModelUnavailable(
                f"cannot load {model!r}: {index} not found; a diffusers pipeline directory holds one "
                "(write one with `pipe.save_pretrained(dir)`)"
            )
        check_pipeline_folder(ref.path(), repr(model))
        return
    model = ref.name
    cached = check_hub_file(model, ["model_index.json"], revision, _PIPELINE_FIX)
    if cached and is_offline_mode():
        # A cached model_index.json does not mean cached weights: name the missing components.
        components = [k for k, v in read_json(Path(cached), f"the cached model index of {model!r}").items()
                      if not k.startswith("_") and isinstance(v, list) and v and v[0] is not None]
        missing = [c for c in components if not (Path(cached).parent / c).is_dir()]
        if missing:
            raise _hub_unavailable(model, revision, f"only partly in the local Hugging Face cache (missing "
                                   f"{', '.join(missing)}) and the Hub cannot be reached (offline)", _PIPELINE_FIX)


def check_clip_available(model: str, pretrained: str | None) -> None:
    """Fast preflight for `load_clip`: raises ModelUnavailable when loading cannot work."""
    ref = ModelRef.parse(model, clip=True)
    if ref.kind == BUILTIN:
        builtin_name(ref, builtin.CLIP_MODELS, "CLIP model")
        return
    if ref.kind == HUB:
        check_hub_file(ref.name, ["open_clip_config.json"], None, _CLIP_FIX, f"CLIP model {model!r}")
        return
    if ref.kind == LOCAL:
        config = ref.path() / "open_clip_config.json"
        if not config.is_file():
            raise ModelUnavailable(f"cannot load CLIP model {model!r}: {config} not found")
        if not isinstance(read_json(config, f"the config of CLIP model {model!r}").get("model_cfg"), dict):
            raise BrokenModel(f"CLIP model {model!r}: {config} has no model_cfg mapping (open_clip's"
                              " `push_to_hf_hub` layout)")
        if not weight_files(ref.path()):
            raise BrokenModel(f"cannot load CLIP model {model!r}: {ref.path()} has no weights file"
                              " (open_clip_model.safetensors or open_clip_pytorch_model.bin)")
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
        if pretrained_is_file(pretrained):
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
    check_hub_file(repo_id, names, None, _CLIP_FIX, f"CLIP {model}/{pretrained} (weights in {repo_id!r})")


def check_file_model_available(model: str, filename: str, revision: str | None, what: str) -> None:
    """A model that is one file: a local file, or `filename` in a Hub repo (the aesthetic head)."""
    ref = ModelRef.parse(model)
    if ref.kind == LOCAL:
        if not ref.path().is_file():
            raise ModelUnavailable(f"cannot load {what} {model!r}: no such file")
        return
    check_hub_file(ref.name, [filename], revision, f"or point {what} at a local file", f"{what} {model!r}")


def check_folder_model_available(model: str, revision: str | None, what: str) -> None:
    """A transformers model with an image processor (an image classifier, BLIP): a local folder with
    config.json, a processor config and weights, or a Hub repo."""
    ref = ModelRef.parse(model)
    if ref.kind == LOCAL:
        folder = ref.path()
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(f"cannot load {what} {model!r}: {folder / 'config.json'} not found")
        processor = [name for name in PROCESSOR_CONFIGS if (folder / name).is_file()]
        if not processor:
            raise BrokenModel(f"cannot load {what} {model!r}: {folder} has no {' or '.join(PROCESSOR_CONFIGS)}"
                              " (its image processor; `processor.save_pretrained(dir)` writes one)")
        for name in ("config.json", *processor):
            read_json(folder / name, f"the {name} of {what} {model!r}")
        if not weight_files(folder):
            raise BrokenModel(f"cannot load {what} {model!r}: {folder} has no weights file"
                              " (model.safetensors or pytorch_model.bin)")
        return
    check_hub_file(ref.name, ["config.json"], revision, f"or point {what} at a local folder", f"{what} {model!r}")


@contextmanager
def reported_at(field: str):
    """Model problems inside the block, reported at recipe field `field`."""
    from ..errors import BuildError, InputError
    try:
        yield
    except BrokenModel as e:
        raise InputError(getattr(e, "field", None) or field, str(e)) from None
    except ModelUnavailable as e:
        raise BuildError(str(e)) from None
