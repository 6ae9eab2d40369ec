"""tsv: one caption per line as `ID<TAB>CAPTION`; lines starting with `comment` (default `#`) and blank
lines are skipped. The row id is the ID field; a line without a tab is an error at its line."""
from __future__ import annotations

from typing import Iterator

from synthvlm_builder.plugins import CaptionSource, InputError, Row


class TsvSource(CaptionSource):
    name = "tsv"
    summary = "ID<TAB>CAPTION per line"
    order = 100
    schema = {"properties": {"comment": {
        "description": "tsv sources: lines starting with this are comments (default #).",
        "type": "string", "minLength": 1}}}

    @classmethod
    def rows(cls, src, index: int, f) -> Iterator[Row]:
        comment = src.option("comment", "#")
        for lineno, line in f.lines():
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith(comment):
                continue
            rid, tab, text = line.partition("\t")
            if not tab or not rid.strip():
                raise InputError(f.field, "expected ID<TAB>CAPTION", location=f"{f.path}:{lineno}")
            yield rid.strip(), text, lineno, None
