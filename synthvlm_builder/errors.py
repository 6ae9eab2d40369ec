"""Error types and their exit codes.

Bad input (exit 2) is reported as `FILE:LINE:COL: field.path: message`, one line
per problem; runtime failures (exit 1) as a plain message. The CLI maps these
to exit codes; no stage prints or exits by itself.
"""
from __future__ import annotations

from dataclasses import dataclass


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
        super().__init__(f"{location or field}: {message}")


class BuildError(Exception):
    """A runtime failure (exit 1): model unavailable, too few rows, push failed."""

    exit_code = 1
