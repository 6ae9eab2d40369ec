"""text: one caption per line; blank lines are separators, not empty captions; the row id is the
line index."""
from __future__ import annotations

from typing import Iterator

from ...recipe.config import SourceConfig
from ..reading import CaptionSource, Row
from ..sourcefile import SourceFile



class TextSource(CaptionSource):
    name = "text"
    summary = "one caption per line"
    order = 60

    @classmethod
    def rows(cls, src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
        for lineno, line in f.lines():
            line = line.rstrip("\r\n")
            if line.strip():  # blank lines are separators, not empty captions
                yield lineno - 1, line, lineno, None
