"""Caption sources: each reader streams (row id, caption, position, image) from one recipe source.

Everything streams: ijson for LLaVA's JSON list, pyarrow row groups for parquet,
`datasets` streaming for the Hub. `read_source` opens and checks a source up to
its first row before it returns, so a missing file or column fails before work starts.

Row ids: llava_json uses the record's `id` (or `id_column`); the others use
`id_column` when set, else the 0-based row index (jsonl/text: the line index, so
skipped blank lines still count; csv: the data row after the header;
parquet/hf_dataset: the row).  Caption ids are "<source name>:<row id>".

Original images (for filters.source_image) come with llava_json sources that set `images` (the
record's `image`, a path under that folder) and hf_dataset sources that set `image_column` (the
encoded bytes, never decoded here); other rows carry None.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from itertools import chain, islice
from pathlib import Path
from typing import Callable, Iterator

from ..errors import InputError
from ..recipe.config import MISSING_IMAGE, Caption, SourceConfig
from ..recipe.paths import FILE_TYPES


def source_field(index: int, name: str) -> str:
    """The recipe field path of a source's key, e.g. captions.sources[1].column."""
    return f"captions.sources[{index}].{name}"


def _caption_text(value, src: SourceConfig, index: int, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(source_field(index, "column"),
                         f"{where}: {src.column!r} is {type(value).__name__}, not text")
    return value


def _missing_column(src: SourceConfig, index: int, name: str, columns, where: str) -> InputError:
    key = "column" if name == src.column else "image_column" if name == src.image_column else "id_column"
    return InputError(source_field(index, key), f"{where}: no column {name!r} (columns: {', '.join(map(str, columns))})")


# --- where a file source's bytes are -------------------------------------------------------------

def _resolve_hf_uri(src: SourceConfig, index: int) -> Path:
    from huggingface_hub import hf_hub_download, parse_hf_uri
    from huggingface_hub.errors import (EntryNotFoundError, HfUriError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)
    try:
        uri = parse_hf_uri(src.path)
    except HfUriError as e:
        raise InputError(source_field(index, "path"), str(e)) from None
    if not uri.path_in_repo:
        raise InputError(source_field(index, "path"), f"{src.path} names a repository, not a file "
                         "(expected hf://datasets/<org>/<name>/<file>)")
    if uri.revision and src.revision and uri.revision != src.revision:
        raise InputError(source_field(index, "revision"), f"{src.revision!r} contradicts the @{uri.revision} in path")
    revision = uri.revision or src.revision
    try:
        return Path(hf_hub_download(uri.id, uri.path_in_repo, repo_type=uri.type, revision=revision))
    except RevisionNotFoundError:
        raise InputError(source_field(index, "revision"), f"{uri.id} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise InputError(source_field(index, "path"), f"{uri.type} repository {uri.id} not found (or not accessible)") from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass
        raise InputError(source_field(index, "path"), f"cannot download {src.path}: the Hub is unreachable or "
                         "HF_HUB_OFFLINE is set, and the file is not in the local cache") from None
    except EntryNotFoundError:
        raise InputError(source_field(index, "path"), f"{uri.id} has no file {uri.path_in_repo!r}") from None
    except Exception as e:  # transport errors (httpx2), HTTP errors, cache I/O: all stop this source
        raise InputError(source_field(index, "path"), f"cannot download {src.path}: {type(e).__name__}: {e}") from None


def check_images(src: SourceConfig, index: int) -> None:
    """A source's image folder must be there before any caption is read (validate does not ask: a
    recipe may name a folder that is unpacked later, as it may name an hf:// file not yet fetched)."""
    if src.images and not Path(src.images).is_dir():
        raise InputError(source_field(index, "images"), f"image folder not found: {src.images}")


def local_file(src: SourceConfig, index: int) -> Path:
    path = _resolve_hf_uri(src, index) if src.path.startswith("hf://") else Path(src.path)
    if not path.is_file():
        raise InputError(source_field(index, "path"), f"no such file: {path}")
    return path


# --- readers: each yields (row id, caption text, position, image) ---------------------------------
# The position is a 1-based line for line-based files, else a 0-based record/row index (UNITS).
Row = tuple[object, str, int, object]

def _llava_image(rec: dict, folder: str | None):
    if folder is None:
        return None
    name = rec.get("image")
    return os.path.join(folder, name) if isinstance(name, str) and name else MISSING_IMAGE


def _llava_rows(src: SourceConfig, index: int) -> Iterator[Row]:
    import ijson

    path, id_key = local_file(src, index), src.id_column or "id"
    with open(path, "rb") as f:
        if not f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            raise InputError(source_field(index, "path"), f"{path}: expected a JSON list of LLaVA records")
        f.seek(0)
        n = 0
        try:
            for rec in ijson.items(f, "item"):
                where = f"{path}: record {n}"
                if not isinstance(rec, dict) or id_key not in rec:
                    raise InputError(source_field(index, "path"), f"{where} has no {id_key!r}")
                turns = rec.get("conversations") or []
                text = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None)
                if not isinstance(text, str):
                    raise InputError(source_field(index, "path"), f"{where} (id {rec[id_key]}) has no 'gpt' turn with text")
                yield rec[id_key], text, n, _llava_image(rec, src.images)
                n += 1
        except ijson.JSONError as e:
            raise InputError(source_field(index, "path"),
                             f"{path}: invalid JSON after record {n} (near byte {f.tell()}): {e}") from None


def _jsonl_rows(src: SourceConfig, index: int) -> Iterator[Row]:
    path = local_file(src, index)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            if not line.strip():
                continue
            where = f"{path}:{lineno + 1}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(source_field(index, "path"), f"{where}:{e.colno}: invalid JSON: {e.msg}") from None
            if not isinstance(rec, dict):
                raise InputError(source_field(index, "path"), f"{where}: expected a JSON object per line")
            for name in filter(None, (src.column, src.id_column)):
                if name not in rec:
                    raise _missing_column(src, index, name, rec, where)
            yield ((rec[src.id_column] if src.id_column else lineno), _caption_text(rec[src.column], src, index, where),
                   lineno + 1, None)


def _csv_rows(src: SourceConfig, index: int) -> Iterator[Row]:
    path = local_file(src, index)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(source_field(index, "path"), f"{path}: empty file, expected a header row")
            cols = []
            for name in filter(None, (src.column, src.id_column)):
                if name not in header:
                    raise _missing_column(src, index, name, header, f"{path} header")
                cols.append(header.index(name))
            for i, row in enumerate(reader):
                if not row:
                    continue
                if len(row) != len(header):
                    raise InputError(source_field(index, "path"), f"{path}: data row {i} has {len(row)} fields, "
                                     f"the header has {len(header)}")
                yield (row[cols[1]] if src.id_column else i), row[cols[0]], reader.line_num, None
        except csv.Error as e:
            raise InputError(source_field(index, "path"), f"{path}: line {reader.line_num}: {e}") from None


def _parquet_rows(src: SourceConfig, index: int) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = local_file(src, index)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(source_field(index, "path"), f"{path}: not a readable parquet file: {e}") from None
    schema = pf.schema_arrow
    names = list(dict.fromkeys(filter(None, (src.column, src.id_column))))
    for name in names:
        if name not in schema.names:
            raise _missing_column(src, index, name, schema.names, str(path))
    kind = schema.field(src.column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise InputError(source_field(index, "column"), f"{path}: column {src.column!r} is {kind}, not text")
    row = 0
    for batch in pf.iter_batches(batch_size=8192, columns=names):  # one row group's slice at a time
        texts = batch.column(src.column).to_pylist()
        ids = batch.column(src.id_column).to_pylist() if src.id_column else range(row, row + len(texts))
        for rid, text in zip(ids, texts):
            yield rid, _caption_text(text, src, index, f"{path}: row {row}"), row, None
            row += 1


def _text_rows(src: SourceConfig, index: int) -> Iterator[Row]:
    path = local_file(src, index)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            line = line.rstrip("\n")
            if line.strip():  # blank lines are separators, not empty captions
                yield lineno, line, lineno + 1, None


def _hf_image(value):
    """An undecoded datasets Image value ({"bytes", "path"}) as bytes, a file path, or MISSING_IMAGE."""
    if isinstance(value, dict):
        return value.get("bytes") or value.get("path") or MISSING_IMAGE
    return MISSING_IMAGE


def _hf_dataset_rows(src: SourceConfig, index: int) -> Iterator[Row]:
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


READERS: dict[str, Callable[[SourceConfig, int], Iterator[Row]]] = {
    "llava_json": _llava_rows, "jsonl": _jsonl_rows, "csv": _csv_rows,
    "parquet": _parquet_rows, "text": _text_rows, "hf_dataset": _hf_dataset_rows,
}


def _text_errors(rows: Iterator, src: SourceConfig, index: int) -> Iterator:
    try:
        yield from rows
    except UnicodeDecodeError as e:
        raise InputError(source_field(index, "path"), f"{src.path}: not UTF-8 text ({e.reason})") from None


UNITS = {"jsonl": "line", "csv": "line", "text": "line", "llava_json": "record", "parquet": "row",
         "hf_dataset": "row"}


def position(src: SourceConfig, pos: int) -> str:
    unit = UNITS[src.type]
    return f"{src.path}:{pos}" if unit == "line" else f"{src.path}: {unit} {pos}"


def read_source(src: SourceConfig, index: int, on_duplicate: Callable[[Caption], None] | None = None
                ) -> Iterator[Caption]:
    """The source's captions in file order, at most `src.limit` rows, stripped of surrounding
    whitespace; raises InputError up front for a missing file or column and for a broken first row.

    Row ids must be unique within a source (an id names a caption's seed and sample id): a repeat is
    an InputError naming both positions, or with `duplicate_ids: drop` is passed to `on_duplicate`
    and skipped. Seen ids are kept as 16-byte digests."""
    if src.type not in READERS:
        raise InputError(source_field(index, "type"), f"unknown source type {src.type!r} (one of {', '.join(READERS)})")
    if src.path.startswith("hf://") and src.type not in FILE_TYPES:
        raise InputError(source_field(index, "path"), f"hf:// paths are for file sources ({', '.join(FILE_TYPES)})")
    check_images(src, index)
    rows = _text_errors(READERS[src.type](src, index), src, index)
    first = next(rows, None)  # runs the reader's opening checks now, not at the caller's first next()
    rows = chain([first], rows) if first is not None else iter(())
    if src.limit is not None:
        rows = islice(rows, src.limit)
    return _unique_ids(rows, src, index, on_duplicate)


def _unique_ids(rows, src: SourceConfig, index: int, on_duplicate) -> Iterator[Caption]:
    seen: set[bytes] = set()
    for rid, text, pos, image in rows:
        caption = Caption(f"{src.name}:{rid}", text.strip(), src.name, image)
        key = hashlib.blake2b(str(rid).encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if key in seen:
            if src.duplicate_ids != "drop":
                raise _duplicate(src, index, rid, pos)
            if on_duplicate is not None:
                on_duplicate(caption)
            continue
        seen.add(key)
        yield caption


def _duplicate(src: SourceConfig, index: int, rid, pos: int) -> InputError:
    """The error for a repeated id, naming where it first appeared (found by reading again: rare)."""
    first = next(p for r, _, p, _ in READERS[src.type](src, index) if str(r) == str(rid))
    unit = UNITS[src.type]
    return InputError(source_field(index, "duplicate_ids"),
                      f"id {str(rid)!r} repeats {unit} {first}; ids must be unique within a source (set"
                      f" {source_field(index, 'duplicate_ids')}: drop to keep the first row of each id)",
                      location=position(src, pos))
