"""csv: a header row, then one record per line; the caption is `column`, the row id `id_column`
(default: the data row's index).

Parsed strictly (`csv.reader(strict=True)`): a quote not closed, text after a closing quote, a NUL or
a ragged row is an error at its line. A record must also stay on its line: a quoted field holding a
line break is refused, because it cannot be told from a quote left open that swallows the rows after
it into one caption, and a caption is one line of text (JSONL and parquet can carry any text a CSV
cell could)."""
from __future__ import annotations

import csv
from typing import Iterator, Optional

from ...errors import InputError
from ...recipe.config import SourceConfig
from ..reading import CaptionSource, Row, missing_column
from ..sourcefile import SourceFile


class CsvSource(CaptionSource):
    name = "csv"
    summary = "a header row, then one record per line"
    order = 40
    options = ("column", "id_column")

    @classmethod
    def rows(cls, src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
        reader = csv.reader((line for _, line in f.lines()), strict=True)

        def record() -> tuple[int, Optional[list[str]]]:
            start = reader.line_num + 1
            try:
                row = next(reader, None)
            except csv.Error as e:
                if str(e) == "unexpected end of data":
                    raise InputError(f.field, f"the record starting here ends inside a quoted field at line"
                                     f" {reader.line_num}: a quote is not closed",
                                     location=f"{f.path}:{start}") from None
                raise InputError(f.field, f"malformed CSV: {e}", location=f"{f.path}:{reader.line_num}") from None
            if row is not None and reader.line_num > start:
                raise InputError(f.field, f"the record starting here runs to line {reader.line_num} (a quoted field"
                                 " holds a line break, or a quote is not closed); a CSV caption source holds one record"
                                 " per line (JSONL or parquet carry any text)", location=f"{f.path}:{start}")
            return start, row

        line, header = record()
        if header is None:
            raise InputError(f.field, f"{f.path}: empty file, expected a header row")
        cols = []
        for name in filter(None, (src.column, src.id_column)):
            if name not in header:
                raise missing_column(src, index, name, header, f"{f.path} header")
            cols.append(header.index(name))
        i = 0
        while True:
            line, row = record()
            if row is None:
                return
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f.field, f"{len(row)} fields, the header has {len(header)}",
                                 location=f"{f.path}:{line}")
            yield (row[cols[1]] if src.id_column else i), row[cols[0]], line, None
            i += 1
