"""The caption readers: each yields (row id, caption text, position, image) from one recipe source.

Everything streams: yajl for LLaVA's JSON list (jsonlist.py), one line at a time for JSONL, CSV and
text, pyarrow row groups for parquet, `datasets` streaming for the Hub. File sources read through
a SourceFile (sourcefile.py), which hashes every byte read and decodes lines as strict UTF-8.

Row ids: llava_json uses the record's `id` (or `id_column`); the others use `id_column` when set,
else the 0-based row index (jsonl/text: the line index, so skipped blank lines still count; csv: the
data row after the header; parquet/hf_dataset: the row). The position is a 1-based line for
line-based files, else a 0-based record/row index (sources.UNITS).

CSV is parsed strictly (`csv.reader(strict=True)`): a quote not closed, text after a closing quote,
a NUL or a ragged row is an error at its line. A record must also stay on its line: a quoted field
holding a line break is refused, because it cannot be told from a quote left open that swallows the
rows after it into one caption, and a caption is one line of text (JSONL and parquet can carry any
text a CSV cell could).

Original images (for filters.source_image) come with llava_json sources that set `images` (the
record's `image`, a path under that folder) and hf_dataset sources that set `image_column` (the
encoded bytes, never decoded here); other rows carry None.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from typing import Callable, Iterator, Optional

from ..errors import InputError
from ..recipe.config import MISSING_IMAGE, SourceConfig
from ..text import printable
from .jsonlist import iter_json_list
from .sourcefile import SourceFile

Row = tuple[object, str, int, object]


def source_field(index: int, name: str) -> str:
    """The recipe field path of a source's key, e.g. captions.sources[1].column."""
    return f"captions.sources[{index}].{name}"


def _caption_text(value, src: SourceConfig, index: int, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(source_field(index, "column"), f"{src.column!r} is {type(value).__name__}, not text",
                         location=where)
    return value


def _missing_column(src: SourceConfig, index: int, name: str, columns, where: str) -> InputError:
    key = "column" if name == src.column else "image_column" if name == src.image_column else "id_column"
    return InputError(source_field(index, key), f"{where}: no column {name!r} (columns: {', '.join(map(str, columns))})")


def _llava_image(rec: dict, folder: str | None):
    if folder is None:
        return None
    name = rec.get("image")
    return os.path.join(folder, name) if isinstance(name, str) and name else MISSING_IMAGE


def _llava_rows(src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
    id_key = src.id_column or "id"
    for n, rec in enumerate(iter_json_list(f)):
        if not isinstance(rec, dict) or id_key not in rec:
            raise InputError(f.field, f"the record has no {id_key!r}", location=f"{f.path}: record {n}")
        turns = rec.get("conversations") or []
        text = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None) \
            if isinstance(turns, list) else None
        if not isinstance(text, str):
            raise InputError(f.field, f"the record (id {printable(rec[id_key])[:80]}) has no 'gpt' turn with text",
                             location=f"{f.path}: record {n}")
        yield rec[id_key], text, n, _llava_image(rec, src.images)


def _jsonl_rows(src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
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
                raise _missing_column(src, index, name, rec, where)
        yield ((rec[src.id_column] if src.id_column else lineno - 1), _caption_text(rec[src.column], src, index, where),
               lineno, None)


def _csv_rows(src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
    reader = csv.reader((line for _, line in f.lines()), strict=True)

    def record() -> tuple[int, Optional[list[str]]]:
        start = reader.line_num + 1
        try:
            row = next(reader, None)
        except csv.Error as e:
            if str(e) == "unexpected end of data":
                raise InputError(f.field, f"the record starting here ends inside a quoted field at line"
                                 f" {reader.line_num}: a quote is not closed", location=f"{f.path}:{start}") from None
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
            raise _missing_column(src, index, name, header, f"{f.path} header")
        cols.append(header.index(name))
    i = 0
    while True:
        line, row = record()
        if row is None:
            return
        if not row:
            continue
        if len(row) != len(header):
            raise InputError(f.field, f"{len(row)} fields, the header has {len(header)}", location=f"{f.path}:{line}")
        yield (row[cols[1]] if src.id_column else i), row[cols[0]], line, None
        i += 1


def _parquet_rows(src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
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
            raise _missing_column(src, index, name, schema.names, str(f.path))
    kind = schema.field(src.column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise InputError(source_field(index, "column"), f"{f.path}: column {src.column!r} is {kind}, not text")
    row = 0
    for batch in pf.iter_batches(batch_size=8192, columns=names):  # one row group's slice at a time
        texts = _pylist(batch.column(src.column), f, row)
        ids = _pylist(batch.column(src.id_column), f, row) if src.id_column else range(row, row + len(texts))
        for rid, text in zip(ids, texts):
            yield rid, _caption_text(text, src, index, f"{f.path}: row {row}"), row, None
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


def _text_rows(src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
    for lineno, line in f.lines():
        line = line.rstrip("\r\n")
        if line.strip():  # blank lines are separators, not empty captions
            yield lineno - 1, line, lineno, None


def _hf_image(value):
    """An undecoded datasets Image value ({"bytes", "path"}) as bytes, a file path, or MISSING_IMAGE."""
    if isinstance(value, dict):
        return value.get("bytes") or value.get("path") or MISSING_IMAGE
    return MISSING_IMAGE


def _hf_dataset_rows(src: SourceConfig, index: int, f: None) -> Iterator[Row]:
    import datasets

    try:
        # cache_dir read now rather than at `datasets` import, so a caller's env change takes effect
        ds = datasets.load_dataset(src.path, name=src.config, split=src.split, revision=src.revision,
                                   streaming=True, cache_dir=os.environ.get("HF_DATASETS_CACHE"))
    except FileNotFoundError as e:  # includes datasets' DatasetNotFoundError
        raise InputError(source_field(index, "path"), f"dataset {src.path!r} not found: {e}") from None
    except ConnectionError as e:
        raise InputError(source_field(index, "path"), f"cannot reach the Hub for {src.path!r}: {e}") from None
    except ValueError as e:  # datasets words these: "Bad split: ..." / "BuilderConfig 'x' not found ..."
        key = "split" if "split" in str(e).lower() else "config" if "config" in str(e).lower() else "path"
        raise InputError(source_field(index, key), str(e)) from None
    names = list(dict.fromkeys(filter(None, (src.column, src.id_column, src.image_column))))
    if ds.column_names is not None:
        for name in names:
            if name not in ds.column_names:
                raise _missing_column(src, index, name, ds.column_names, src.path)
        ds = ds.select_columns(names)  # never decode other columns (images, embeddings)
    if src.image_column:  # the encoded bytes: hashed for the cache, decoded only to be scored
        ds = ds.cast_column(src.image_column, datasets.Image(decode=False))
    for i, rec in enumerate(ds):
        for name in names:
            if name not in rec:
                raise _missing_column(src, index, name, rec, f"{src.path}: row {i}")
        where = f"{src.path}: row {i}"
        yield ((rec[src.id_column] if src.id_column else i), _caption_text(rec[src.column], src, index, where), i,
               _hf_image(rec[src.image_column]) if src.image_column else None)


READERS: dict[str, Callable[[SourceConfig, int, Optional[SourceFile]], Iterator[Row]]] = {
    "llava_json": _llava_rows, "jsonl": _jsonl_rows, "csv": _csv_rows,
    "parquet": _parquet_rows, "text": _text_rows, "hf_dataset": _hf_dataset_rows,
}
