"""The base of every exporter (registry kind "exporter", one module each in release/exporters/): a
finished build written in another training layout. An exporter declares its `name` (the CLI's
`export DIR --<name> OUT`, the API's `export(dir, name, out)`), its options (each a flag of the verb,
with a strict parser: units.py) and `export(build_dir, out, **options)`. It reads only the files the
build's manifest owns (layout.release_data) and writes a new folder whole (atomic.py), so nothing a user
had at OUT is overwritten and a killed export leaves nothing behind.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..registry import Component


@dataclass(frozen=True)
class ExportOption:
    flag: str                           # e.g. --shard-size
    metavar: str
    help: str
    parse: Callable[[str, str], Any]    # (text, flag) -> value; bad input raises InputError at the flag

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


class Exporter(Component):
    kind = "exporter"
    schema = None
    options: ClassVar[tuple[ExportOption, ...]] = ()

    @classmethod
    def check(cls, options: dict) -> None:
        """Options that do not go together: an InputError naming the option (its keyword)."""

    @classmethod
    def export(cls, build_dir: Path, out: Path, **options) -> Any:
        """Write the finished build at `build_dir` to the new folder `out` (its options parsed and checked);
        returns what was written: a release/export.py ExportResult."""
        raise NotImplementedError
