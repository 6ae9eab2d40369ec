"""Error types, their exit codes, and the one line each is reported as.

Bad input (exit 2) is reported as `FILE:LINE:COL: field.path: message`, one line
per problem, `error: --flag: message` / `error: VARIABLE: message`, or
`PATH:LINE: message (field)` in an input file; runtime failures (exit 1) as
`error: message`. The CLI prints `error_line` for these types, and `fault_line`
for the errors that escape a verb but that real inputs cause (OSError, text that
is not UTF-8, ValueError, a model that cannot be loaded); no stage prints or exits
by itself. Every line passes through text.printable: messages quote paths, ids and
values from the input.
"""
from __future__ import annotations

import errno
import sys
from dataclasses import dataclass

from .text import printable


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    field: str
    message: str

    def __str__(self) -> str:
        # One line whatever a recipe holds: a key or value quoted here may hold a line break, an
        # escape sequence or a lone surrogate (text.printable).
        from .text import printable
        return printable(f"{self.file}:{self.line}:{self.col}: {self.field}: {self.message}")


class RecipeError(Exception):
    """One or more located problems with a recipe (exit 2)."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InputError(Exception):
    """Bad input found after the recipe loaded (a missing column, unreadable file).

    `field` is the recipe field path that led to the input, e.g.
    `captions.sources[1].column` (the CLI turns it into FILE:LINE:COL via the recipe), or a
    command-line flag such as `--device` (printed as is). `location` names a place in an input
    file instead, e.g. `captions.jsonl:9`.
    """

    exit_code = 2

    def __init__(self, field: str, message: str, location: str | None = None):
        self.field = field
        self.message = message
        self.location = location  # "FILE:LINE" in an input file the problem is in, when known
        # The problem located in its recipe (FILE:LINE:COL) once an API call that read the recipe knows
        # where `field` is (recipe/loader.py locate_error); the CLI prints it as it prints a RecipeError's.
        self.problems: list[Problem] = []
        super().__init__(f"{location or field}: {message}")

    @property
    def unlocated(self) -> bool:
        """About a recipe field, and not yet located (a flag, a variable or DIR is not a recipe field)."""
        return not self.problems and not self.location and (self.field or "")[:1].islower()


class UnsafeOutput(InputError):
    """A write that would replace what must never be replaced: a device, a FIFO, a socket, a symbolic
    link, a folder where a file goes (atomic.py). Exit 2; the message names the path, and a verb that
    knows which flag named it re-raises it as that flag's InputError."""

    def __init__(self, path, message: str):
        self.path = path
        super().__init__("", f"{path} {message}")


class BuildError(Exception):
    """A runtime failure (exit 1): model unavailable, too few rows, push failed. It is located in no
    input, so `problems` stays empty."""

    exit_code = 1

    def __init__(self, *args):
        super().__init__(*args)
        self.problems: list[Problem] = []


def error_line(e: RecipeError | InputError | BuildError) -> str:
    """How the CLI reports one of the types above: located in an input file, at a recipe field (once
    located there: recipe/loader.py locate_error), or at a flag or variable."""
    if isinstance(e, RecipeError):
        return str(e)
    if not isinstance(e, InputError):
        return printable(f"error: {e}")
    if e.location:
        return printable(f"{e.location}: {e.message} ({e.field})")
    if e.problems:
        return "\n".join(str(p) for p in e.problems)
    if not e.field:
        return printable(f"error: {e.message}")
    return printable(f"error: {e.field}: {e.message}")


# errno values of an OSError about a path the user gave or can fix: bad input (exit 2); others are faults
_PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.ELOOP,
                errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTEMPTY, errno.ENXIO, errno.ENODEV}


def fault_line(e: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for an error that escaped a verb but that a real input or environment
    causes: an OSError (naming its file), text that is not UTF-8 or cannot be encoded, a ValueError, a
    model that cannot be loaded. None for anything else (a bug: the CLI lets its traceback show)."""
    if isinstance(e, OSError):
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        code = 2 if e.errno in _PATH_ERRNOS and where else 1
        line = f"error: {where + ': ' if where else ''}{e.strerror or _named(e)}"
    elif isinstance(e, UnicodeDecodeError):
        code, line = 2, f"error: input text is not UTF-8 ({e}); rerun with --debug to see where it was read"
    elif isinstance(e, UnicodeEncodeError) and isinstance(e.object, str):
        shown = e.object[max(0, e.start - 40):e.end + 40]
        code, line = 2, f"error: {shown!r} cannot be written as UTF-8 ({e.reason}: a lone surrogate in a name or value)"
    elif isinstance(e, UnicodeError):
        code, line = 2, f"error: text that is not valid Unicode ({e}); rerun with --debug to see where"
    elif isinstance(e, ValueError):
        code, line = 1, f"error: {_named(e)} (rerun with --debug for the traceback)"
    elif _is_model_error(e):
        code, line = 1, f"error: cannot load a model: {e}"
    else:
        return None
    return code, printable(line)


def _is_model_error(e: BaseException) -> bool:
    """models/preflight.py's ModelUnavailable, or safetensors' error for a damaged weights file (checked
    by module, so reporting an error never imports the model stack)."""
    preflight, safetensors = sys.modules.get("synthvlm_builder.models.preflight"), sys.modules.get("safetensors")
    return bool(preflight and isinstance(e, preflight.ModelUnavailable)
                or safetensors and isinstance(e, safetensors.SafetensorError))


def _named(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
