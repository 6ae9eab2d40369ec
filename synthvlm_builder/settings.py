"""The environment variables synthvlm-build reads (README "Environment variables"), in one table.

`setting(NAME, default)` is how the package reads one: parsed by the table's function (units.py:
`500MB`, `1GiB`, `0.5`, `500ms`), a bad value is InputError naming the variable. The CLI calls
`check_environment()` before any verb, so `SYNTHVLM_MAX_DATA_FILE_BYTES=lots` or
`SYNTHVLM_PUBLISH_RETRIES=five` is exit 2 (`error: SYNTHVLM_X: ...`) at once, not after the whole
generation. An empty value means unset. Defaults stay beside the code that uses them.

The cache folder is `cache_dir()`: `$SYNTHVLM_CACHE`, else `~/.cache/synthvlm`. Whether a recipe needs it
(a built-on-first-use builtin model, a model step of the caption stage) and can have it is checked before
any work by execution/preflight.py `check_cache`.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import InputError
from .units import parse_bytes, parse_int, parse_seconds

CACHE = "SYNTHVLM_CACHE"


def _path(text: str, name: str) -> str:
    if "\x00" in text:
        raise InputError(name, f"{text!r} holds a NUL character, which no path can")
    return text


def _test_signal(text: str, name: str) -> str:
    """SIG@N (a build's shard N, execution/worker.py), SIG@upload:N (release/stream.py) or SIG@captions
    (execution/curate.py); the text as is."""
    sig, at, where = text.strip().partition("@")
    number = "0" if where == "captions" else where.removeprefix("upload:")
    known = sig.isascii() and sig.isalnum() and isinstance(getattr(signal, f"SIG{sig.upper()}", None), signal.Signals)
    if not (at and known and number.isascii() and number.isdigit() and len(number) < 10):
        raise InputError(name, f"{text!r} is not SIG@N, SIG@upload:N or SIG@captions, SIG a signal name and N a"
                         " number (e.g. KILL@2)")
    return text.strip()


@dataclass(frozen=True)
class Variable:
    name: str
    parse: Callable[[str, str], object]  # (text, name) -> value, or InputError(name, ...)
    meaning: str


VARIABLES = {v.name: v for v in (
    Variable(CACHE, _path, "folder of built-in models and the caption stage's caches"),
    Variable("SYNTHVLM_MAX_DATA_FILE_BYTES", parse_bytes, "bytes per data file (release/dataset.py)"),
    Variable("SYNTHVLM_PUBLISH_RETRIES", parse_int, "retries of a transient Hub error (retry.py)"),
    Variable("SYNTHVLM_PUBLISH_RETRY_WAIT", parse_seconds, "first backoff wait, seconds (retry.py)"),
    Variable("SYNTHVLM_PUBLISH_FILES_PER_COMMIT",
             lambda text, name: parse_int(text, name, minimum=1), "files per Hub commit (release/staged.py)"),
    Variable("SYNTHVLM_LLM_RETRY_WAIT", parse_seconds, "first backoff wait of the LLM judge, seconds"),
    Variable("SYNTHVLM_LOCK_TTL", parse_seconds, "lease of an object-store build's lock (execution/lease.py)"),
    Variable("SYNTHVLM_TEST_SIGNAL", _test_signal, "fault injection: SIG@N, SIG@upload:N or SIG@captions"),
    Variable("SYNTHVLM_TEST_OOM_ABOVE", parse_int, "fault injection: out of memory above N images"),
)}


def setting(name: str, default=None):
    """The parsed value of environment variable `name` (one of VARIABLES), `default` when unset or empty."""
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    return VARIABLES[name].parse(text, name)


def check_environment() -> None:
    """Parse every variable that is set: a bad one is InputError before any work."""
    for name in VARIABLES:
        setting(name)


def cache_dir() -> Path:
    """Where built-in models and the caption caches live: `$SYNTHVLM_CACHE`, else `~/.cache/synthvlm`."""
    env = setting(CACHE)
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HOME")
    if home is not None and not os.path.isabs(home):
        raise InputError("HOME", f"{home!r} is not an absolute path, and the cache defaults to ~/.cache/synthvlm;"
                         f" set HOME, or {CACHE} to a writable folder")
    try:
        return Path.home() / ".cache" / "synthvlm"
    except RuntimeError:  # no HOME and no user database entry (a bare container)
        raise InputError("HOME", f"is not set, and the cache defaults to ~/.cache/synthvlm; set HOME, or {CACHE}"
                         " to a writable folder") from None
