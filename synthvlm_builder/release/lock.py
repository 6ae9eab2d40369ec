"""recipe.lock.json: what a build was made from, so it can be rebuilt, verified and published
with its identity (the resolved recipe, the fingerprint, the curated captions' digest, the exact
model weights, the package versions and the settings that change low bits of pixels)."""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..execution.plan import portable_dict
from ..layout import LOCK
from ..version import __version__

if TYPE_CHECKING:  # a lock is read (publish, verify) far more often than written
    from ..execution.context import BuildContext

PACKAGES = ("torch", "diffusers", "transformers", "open_clip_torch", "datasets", "huggingface_hub",
            "pyarrow", "pillow", "scikit-image", "numpy", "kenlm", "sentencepiece", "jieba", "openai")


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["synthvlm-builder"] = __version__
    versions["python"] = platform.python_version()
    return versions


def build_lock(ctx: BuildContext) -> dict:
    """The lock of the build `ctx`, once every shard is done."""
    from ..stages.ssim import implementation as ssim_implementation  # torch: not for readers of a lock
    recipe, meta = ctx.recipe, ctx.caption_meta
    portable = portable_dict(recipe)
    return {"fingerprint": ctx.fingerprint, "identity": ctx.identity, "inputs": ctx.inputs, "recipe": portable,
            "captions": {"count": meta["count"], "sha256": meta["sha256"]},
            "models": models_entry(ctx.inputs, portable),
            "scoring": {"image": "the published bytes, decoded with PIL as RGB",
                        "clip": "open_clip cosine of L2-normalised image and text embeddings"
                                + (", as 2.5 * max(cosine, 0)" if recipe.score.clip.units == "clipscore" else ""),
                        "ssim": ssim_implementation(ctx.work.marker(0).get("device_type") or "cpu")
                                if ctx.n_shards else None},
            "packages": package_versions(),
            **plugins_entry(portable),
            "build": {"executor": ctx.executor, "device": ctx.device, **batch_sizes(ctx),
                      "shard_size": recipe.execution.shard_size, **generated_on(ctx)}}


def models_entry(inputs: dict, portable: dict) -> dict:
    """Each model as the recipe names it, with `weights`: the digest the build's content identity read
    for it (`inputs`, models/uses.py; the one `verify` compares): for a builtin or local folder the
    sha256 over every file's relative path and sha256 (a deleted or replaced unet/ changes it), for a
    local file its sha256, for a Hub model the commit its revision resolved to (a commit pins every file
    of the repository), for an open_clip release its tag. Which models, and under what names, the
    components declare (their `models`)."""
    from ..models.uses import lock_entries
    from ..recipe.components import model_uses
    return lock_entries(model_uses(portable), inputs)


def plugins_entry(portable: dict) -> dict:
    """The plugin packages whose components the build used, with their versions (none: no entry, so a
    build without plugins has the lock it always had)."""
    from ..recipe.components import plugins_used
    used = plugins_used(portable)
    return {"plugins": used} if used else {}


def batch_sizes(ctx: BuildContext) -> dict:
    """The batch size the shards were generated with (their markers say; `auto` resolved), and each
    shard's when they differ (an out-of-memory back-off halved it mid-build)."""
    sizes = [ctx.work.marker(i).get("batch_size") or ctx.recipe.generate.batch_size for i in range(ctx.n_shards)]
    out = {"batch_size": sizes[0] if sizes else ctx.recipe.generate.batch_size}
    if len(set(sizes)) > 1:
        out["shard_batch_sizes"] = sizes
    if ctx.recipe.generate.batch_size == "auto":
        out["batch_size_chosen_by"] = "auto"
    return out


def generated_on(ctx: BuildContext) -> dict:
    """The device types and CPU thread counts the shards were generated with (their markers say)."""
    markers = [ctx.work.marker(i) for i in range(ctx.n_shards)]
    return {"device_types": sorted({m.get("device_type") or "unknown" for m in markers}),
            "cpu_threads": sorted({m["cpu_threads"] for m in markers if m.get("cpu_threads")})}


# What verify and publish rely on in a lock; a release downloaded from anywhere is checked against it
# before any field is used. Older locks may lack `identity` and `inputs`; other sections are free.
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SIZE = {"type": "integer", "minimum": 1}
LOCK_SCHEMA = {
    "type": "object",
    "required": ["fingerprint", "recipe", "captions", "build"],
    "properties": {
        "fingerprint": _HEX64,
        "identity": _HEX64,
        "inputs": {"type": "object", "additionalProperties": {"type": "string"}},
        "recipe": {"type": "object", "required": ["name", "version"],
                   "properties": {"name": {"type": "string", "minLength": 1},
                                  "version": {"type": "string", "minLength": 1}}},
        "captions": {"type": "object", "required": ["count", "sha256"],
                     "properties": {"count": {"type": "integer", "minimum": 0}, "sha256": _HEX64}},
        "models": {"type": "object"},
        "packages": {"type": "object"},
        "build": {"type": "object", "required": ["batch_size", "shard_size"],
                  "properties": {"batch_size": _SIZE, "shard_size": _SIZE,
                                 "shard_batch_sizes": {"type": "array", "items": _SIZE, "minItems": 1},
                                 "device_types": {"type": "array", "items": {"type": "string"}},
                                 "cpu_threads": {"type": "array", "items": _SIZE}}},
    },
}


def read_lock(build_dir: Path) -> dict:
    """A build's recipe.lock.json checked against LOCK_SCHEMA, or bad input naming the file and field."""
    import jsonschema

    path = Path(build_dir) / LOCK
    try:
        lock = json.loads(path.read_bytes())
    except OSError as e:
        raise InputError("(file)", f"cannot read it: {e.strerror or e}", location=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("(file)", "is not UTF-8 text; the lock is damaged", location=str(path)) from None
    except json.JSONDecodeError as e:
        raise InputError("(file)", f"line {e.lineno} column {e.colno}: not JSON ({e.msg}); the lock is damaged",
                         location=str(path)) from None
    except (ValueError, RecursionError) as e:  # a number of thousands of digits, nesting too deep
        raise InputError("(file)", f"not readable JSON ({e}); the lock is damaged", location=str(path)) from None
    # JSON Schema counts 4.0 as an integer; a batch or shard size must be a real one
    strict = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=strict)(LOCK_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(lock))
    if error is not None:
        field, problem = _described(error)
        raise InputError(field, f"{problem}: not a lock as a synthvlm build writes it", location=str(path))
    return lock


_TYPES = {"object": "a JSON object", "array": "a JSON list", "string": "a string", "integer": "a whole number"}


def _described(error) -> tuple[str, str]:
    """(the dotted field, what is wrong with it in a few words) for a jsonschema error."""
    parts = list(error.absolute_path)
    if error.validator == "required":
        parts.append(next(k for k in error.validator_value if k not in error.instance))
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "(file)"
    value = json.dumps(error.instance, ensure_ascii=False)
    value = value if len(value) <= 40 else value[:39] + "…"
    if error.validator == "required":
        return field, "is missing"
    if error.validator == "type":
        return field, f"must be {_TYPES.get(error.validator_value, error.validator_value)}, got {value}"
    if error.validator in ("minimum", "minLength", "minItems"):
        return field, f"must be at least {error.validator_value}{' long' if error.validator != 'minimum' else ''}," \
                      f" got {value}"
    if error.validator == "pattern":
        return field, f"must be a sha256 (64 lowercase hex digits), got {value}"
    return field, error.message[:160]
