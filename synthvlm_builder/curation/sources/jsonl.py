"""jsonl: one JSON object per line; the caption is `column`, the row id `id_column` (default: the line
index, so skipped blank lines still count)."""
from __future__ import annotations

import json
import sys
from typing import Iterator

from ...errors import InputError
from ...recipe.config import SourceConfig
from ..reading import CaptionSource, Row, caption_text, missing_column
from ..sourcefile import SourceFile


class JsonlSource(CaptionSource):
    name = "jsonl"
    summary = "one JSON object per line"
    order = 30
    options = ("column", "id_column")

    @classmethod
    def rows(cls, src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
        for lineno, line in f.lines():
            if not line.strip():
                continue
            where = f"{f.path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f.field, f"invalid JSON: {e.msg}", location=f"{where}:{e.colno}") from None
            except ValueError:  # json parses integers with int(), which refuses more digits than this
                raise InputError(f.field, f"a number of more than {sys.get_int_max_str_digits():,} digits"
                                 " (write large ids as strings)", location=where) from None
            except RecursionError:
                raise InputError(f.field, "JSON nested too deeply", location=where) from None
            del line  # the record holds the caption: one copy of a long line, not two
            if not isinstance(rec, dict):
                raise InputError(f.field, "expected a JSON object per line", location=where)
            for name in filter(None, (src.column, src.id_column)):
                if name not in rec:
                    raise missing_column(src, index, name, rec, where)
            yield ((rec[src.id_column] if src.id_column else lineno - 1),
                   caption_text(rec[src.column], src, index, where), lineno, None)
