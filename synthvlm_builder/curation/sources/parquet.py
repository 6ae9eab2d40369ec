"""parquet: a Parquet file, read one row group's slice at a time; the caption is `column` (text),
the row id `id_column` (default: the row index)."""
from __future__ import annotations

from typing import Iterator

from ...errors import InputError
from ...recipe.config import SourceConfig
from ..reading import CaptionSource, Row, caption_text, missing_column, source_field
from ..sourcefile import SourceFile



class ParquetSource(CaptionSource):
    name = "parquet"
    summary = "a Parquet table"
    order = 50
    unit = "row"
    options = ("column", "id_column")

    @classmethod
    def rows(cls, src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(f.random_access())
        except (pa.ArrowException, OSError) as e:
            raise InputError(f.field, f"{f.path}: not a readable parquet file: {e}") from None
        schema = pf.schema_arrow
        names = list(dict.fromkeys(filter(None, (src.column, src.id_column))))
        for name in names:
            if name not in schema.names:
                raise missing_column(src, index, name, schema.names, str(f.path))
        kind = schema.field(src.column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
            raise InputError(source_field(index, "column"), f"{f.path}: column {src.column!r} is {kind}, not text")
        row = 0
        for batch in pf.iter_batches(batch_size=8192, columns=names):  # one row group's slice at a time
            texts = _pylist(batch.column(src.column), f, row)
            ids = _pylist(batch.column(src.id_column), f, row) if src.id_column else range(row, row + len(texts))
            for rid, text in zip(ids, texts):
                yield rid, caption_text(text, src, index, f"{f.path}: row {row}"), row, None
                row += 1


def _pylist(column, f: SourceFile, first_row: int) -> list:
    try:
        return column.to_pylist()
    except UnicodeDecodeError as e:  # a string column holding bytes that are not UTF-8
        bad = next(i for i in range(len(column)) if _undecodable(column[i]))
        raise InputError(f.field, f"not UTF-8 text ({e.reason})", location=f"{f.path}: row {first_row + bad}") from None


def _undecodable(scalar) -> bool:
    try:
        scalar.as_py()
        return False
    except UnicodeDecodeError:
        return True


