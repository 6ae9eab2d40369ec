"""The build's state files: one JSON Schema per kind, and the rules for reading them back. Their names
are layout.py's:

    DIR/.synthvlm/manifest.json            "manifest"  the dataset files a build installed (layout.py)
    DIR/.synthvlm/install.json             "install"   the journal of a swap in progress (execution/outdir.py)
    DIR/.synthvlm/builds/KEY/state.json    "build"     one build's identity (execution/workdir.py)
    .../KEY/captions.json                  "captions"  where each shard's curated captions start
    .../KEY/shards/shard-NNNNN.done.json   "marker"    a finished shard: rows, size, sha256, timings
    .../KEY/batch.json                     "batch"     the batch size generation uses (execution/batching.py)
    .../KEY/uploads.json                   "uploads"   what --push has sent already (release/stream.py)
    DIR/stats.json                         "stats"     read back to say "nothing to do"
    $SYNTHVLM_CACHE/measured/KEY.json      "measured"  what `plan --measure` measured (execution/measure.py)

Whatever is read back may have been damaged, edited or planted: it is parsed, checked against its
schema, and every path in it must be a plain relative path that stays inside its folder once symbolic
links are resolved (`confined`). What fails is a StateError; the reader decides whether that state can
simply be made again (a shard, the curated captions) or is "corrupt state" (`StateError.corrupt`:
exit 2 naming the file, what is wrong and how to recover), never a traceback and never a path outside.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .errors import InputError
from .text import printable

STAGES = ("generate", "encode", "score", "write")  # the per-stage seconds a shard's marker records
MAX_BYTES = 64 << 20      # a state file is small; a huge one is damage, not something to load

_TEXT = {"type": "string", "minLength": 1}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_COUNT = {"type": "integer", "minimum": 0}
_SECONDS = {"type": "number", "minimum": 0}
_PATHS = {"type": "array", "items": _TEXT, "uniqueItems": True}
_IDENTITY = {"identity": _TEXT, "fingerprint": _TEXT, "inputs": {"type": "object"}}


def _object(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


SCHEMAS = {
    "manifest": _object(["files", "identity", "fingerprint"], files=_PATHS, **_IDENTITY),
    "install": _object(["staging", "files", "build"], staging=_TEXT, files=_PATHS,
                       build=_object(["identity", "fingerprint"], **_IDENTITY)),
    "build": _object(["fingerprint", "identity", "shard_size"], shard_size={"type": "integer", "minimum": 1},
                     **_IDENTITY),
    "captions": _object(["count", "sha256", "shard_size", "shard_offsets", "funnel"], count=_COUNT, sha256=_HEX64,
                        shard_size={"type": "integer", "minimum": 1}, shard_offsets={"type": "array", "items": _COUNT},
                        funnel=_object(["read"], read=_COUNT)),
    "marker": _object(["shard", "rows", "bytes", "sha256", "seconds", "stage_seconds"], shard=_COUNT, rows=_COUNT,
                      bytes=_COUNT, sha256=_HEX64, seconds=_SECONDS, captions=_COUNT, max_image_bytes=_COUNT,
                      stage_seconds=_object(list(STAGES), **dict.fromkeys(STAGES, _SECONDS)),
                      batch_size={"type": "integer", "minimum": 1}, device_type={"type": ["string", "null"]},
                      cpu_threads={"type": ["integer", "null"], "minimum": 1}),
    "batch": _object(["batch_size"], batch_size={"type": "integer", "minimum": 1},
                     history={"type": "array", "items": {"type": "object"}}),
    "uploads": _object(["repo_id", "files"], repo_id=_TEXT,
                       files={"type": "object", "propertyNames": {"pattern": "^[0-9a-f]{64}$"},
                              "additionalProperties": _COUNT}),
    "stats": _object(["rows"], rows=_COUNT),
    "measured": _object(["key", "measured_at", "device", "seconds_per_image", "rounds"], key={"type": "object"},
                        measured_at={"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
                        device=_TEXT, seconds_per_image=_SECONDS,
                        rounds={"oneOf": [{"type": "null"}, _object(
                            ["fingerprint", "captions", "mean"], fingerprint=_TEXT,
                            captions={"type": "integer", "minimum": 1}, mean={"type": "number", "minimum": 1})]}),
}
_VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in SCHEMAS.items()}


class CorruptState(InputError):
    """State that cannot be trusted (exit 2): `corrupt state: PATH is corrupt (what); how to recover`."""

    def __init__(self, path: Path, problem: str, recover: str, field: str = "DIR"):
        self.path, self.problem = Path(path), problem
        super().__init__(field, f"corrupt state: {printable(path)} is corrupt ({printable(problem)}); {recover}")


class StateError(ValueError):
    """What is wrong with a state file (or a path taken from one)."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")

    def corrupt(self, recover: str, field: str = "DIR") -> CorruptState:
        return CorruptState(self.path, self.problem, recover, field)


def load(path: Path, kind: str) -> dict:
    """The JSON object in state file `path`, valid against SCHEMAS[kind]; StateError otherwise.
    A state file is always a regular file written by rename: a link or anything else is damage."""
    path = Path(path)
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise StateError(path, "it is a symbolic link (a build writes its state files itself)")
        if not stat.S_ISREG(info.st_mode):
            raise StateError(path, "it is not a regular file")
        if info.st_size > MAX_BYTES:
            raise StateError(path, f"{info.st_size:,} bytes is far larger than any state file")
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise StateError(path, f"cannot be read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit integer
        raise StateError(path, f"not JSON ({_short(e)})") from None
    error = best_match(_VALIDATORS[kind].iter_errors(data))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        raise StateError(path, f"{where + ': ' if where else ''}{_short(error.message)}")
    return data


def confined(root: Path, rel: str, path: Path, what: str) -> Path:
    """`root / rel` for a path `rel` read from state file `path`, if `rel` is a plain relative POSIX path
    (no '..', '.', empty, absolute or backslashed parts) that stays inside `root` with every symbolic
    link resolved; StateError naming `what` otherwise."""
    shown = _short(repr(rel))
    if PurePosixPath(rel).is_absolute():
        raise StateError(path, f"{what}: {shown} is an absolute path (state stores paths relative to its dir)")
    if any(part in ("", ".", "..") for part in rel.split("/")) or "\\" in rel or "\0" in rel:
        raise StateError(path, f"{what}: {shown} is not a plain relative path")
    target = Path(root) / rel
    try:
        inside = target.resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):  # a symbolic link loop
        inside = False
    if not inside:
        raise StateError(path, f"{what}: {shown} leads outside {printable(root)} (through a symbolic link)")
    return target


def _short(text: object, limit: int = 160) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."
