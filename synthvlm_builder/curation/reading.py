"""Caption sources: the base every source is built on (registry kind "source", one module each in
curation/sources/), and the recipe's sources read as captions, ids checked, file contents verified.

A source declares its `name` (the recipe's `type`), whether it reads one file (`file`: a local path or
an hf:// URL, digested by its bytes, resolved against the recipe file), what a position in it counts
(`unit`), which of the shared source keys it reads (`options`; validate refuses the others), the key
naming each caption's original image (`images`, for filters.source_image), the schema of keys of its
own (`schema`'s properties, read through `SourceConfig.option`), and `rows(src, index, f)`: (row id,
caption text, position, image) tuples in file order, from `f`, the SourceFile of a file source.

`read_source` opens and checks a source up to its first row before it returns, so a missing file or
column fails before work starts. Caption ids are
"<source name>:<row id>". A row id must be text or a number, at most MAX_ID_CHARS characters, unique
within its source; ids and captions must be Unicode text (no lone surrogates, which JSON's `\\ud800`
escape can produce and no UTF-8 file, parquet writer or terminal can hold).

A file source is read once: the bytes the readers consume are hashed as they are read, and when the
reader is done (or stops at `limit`: the rest is read and hashed too) they are compared with the
digest the build took before it locked its output dir, and with the recipe's `sha256` pin
(sourcefile.check_digest): a file replaced in between is refused, never curated under the other
content's name.
"""
from __future__ import annotations

import hashlib
import math
import re
from itertools import chain, islice
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Optional

from ..atomic import not_a_file
from ..errors import InputError
from ..hub import is_hf_url, parse_hf_url
from ..recipe.config import Caption, SourceConfig
from ..registry import Component, registry
from ..text import printable
from .sourcefile import SourceFile, check_digest

Row = tuple[object, str, int, object]  # (row id, caption text, position, original image)
OPTIONS = ("column", "id_column", "config", "split", "images", "image_column")  # keys some sources read


class CaptionSource(Component):
    """The base of every caption source (see the module docstring)."""

    kind = "source"
    file: ClassVar[bool] = True
    unit: ClassVar[str] = "line"            # line | record | row: what `rows` positions count
    options: ClassVar[tuple[str, ...]] = ()  # the keys of OPTIONS it reads
    images: ClassVar[Optional[str]] = None   # the key naming each caption's original image

    @classmethod
    def rows(cls, src: SourceConfig, index: int, f: Optional[SourceFile]) -> Iterator[Row]:
        raise NotImplementedError


def source_class(src: SourceConfig, index: int) -> type:
    found = registry().find("source", src.type)
    if found is None:
        raise InputError(source_field(index, "type"), f"unknown source type {src.type!r} (one of"
                         f" {', '.join(registry().names('source'))})")
    return found


def source_field(index: int, name: str) -> str:
    """The recipe field path of a source's key, e.g. captions.sources[1].column."""
    return f"captions.sources[{index}].{name}"


def caption_text(value, src: SourceConfig, index: int, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(source_field(index, "column"), f"{src.column!r} is {type(value).__name__}, not text",
                         location=where)
    return value


def missing_column(src: SourceConfig, index: int, name: str, columns, where: str) -> InputError:
    key = "column" if name == src.column else "image_column" if name == src.image_column else "id_column"
    return InputError(source_field(index, key),
                      f"{where}: no column {name!r} (columns: {', '.join(map(str, columns))})")

MAX_ID_CHARS = 1000  # a caption id names its samples' ids and seeds: it must stay bounded in length
_SURROGATE = re.compile("[\ud800-\udfff]")


# --- where a file source's bytes are -------------------------------------------------------------

def _resolve_hf_url(src: SourceConfig, index: int) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    try:
        url = parse_hf_url(src.path)
    except ValueError as e:
        raise InputError(source_field(index, "path"), str(e)) from None
    if not url.path:
        raise InputError(source_field(index, "path"), f"{src.path} names a repository, not a file "
                         "(expected hf://datasets/<org>/<name>/<file>)")
    if url.revision and src.revision and url.revision != src.revision:
        raise InputError(source_field(index, "revision"), f"{src.revision!r} contradicts the @{url.revision} in path")
    revision = url.revision or src.revision
    try:
        return Path(hf_hub_download(url.repo_id, url.path, repo_type=url.repo_type, revision=revision))
    except RevisionNotFoundError:
        raise InputError(source_field(index, "revision"), f"{url.repo_id} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise InputError(source_field(index, "path"), f"{url.repo_type} repository {url.repo_id} not found"
                         " (or not accessible)") from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass
        raise InputError(source_field(index, "path"), f"cannot download {src.path}: the Hub is unreachable or "
                         "HF_HUB_OFFLINE is set, and the file is not in the local cache") from None
    except EntryNotFoundError:
        raise InputError(source_field(index, "path"), f"{url.repo_id} has no file {url.path!r}") from None
    except Exception as e:  # transport errors (httpx2), HTTP errors, cache I/O: all stop this source
        raise InputError(source_field(index, "path"), f"cannot download {src.path}: {type(e).__name__}: {e}") from None


def check_images(src: SourceConfig, index: int) -> None:
    """A source's image folder must be there before any caption is read (validate does not ask: a
    recipe may name a folder that is unpacked later, as it may name an hf:// file not yet fetched)."""
    if src.images and not Path(src.images).is_dir():
        raise InputError(source_field(index, "images"), f"image folder not found: {src.images}")


def local_file(src: SourceConfig, index: int) -> Path:
    """The regular file a file source reads (an hf:// file fetched, or found in the cache, first);
    anything else at the path is named for what it is, without opening it."""
    path = _resolve_hf_url(src, index) if is_hf_url(src.path) else Path(src.path)
    why = not_a_file(path)
    if why:
        raise InputError(source_field(index, "path"), why)
    return path


def open_source(src: SourceConfig, index: int) -> SourceFile:
    return SourceFile(local_file(src, index), source_field(index, "path"))


def _text_errors(rows: Iterator, src: SourceConfig, index: int) -> Iterator:
    try:
        yield from rows
    except UnicodeDecodeError as e:
        raise InputError(source_field(index, "path"), f"{src.path}: not UTF-8 text ({e.reason})") from None


def position(src: SourceConfig, pos: int) -> str:
    unit = registry().get("source", src.type).unit
    return f"{src.path}:{pos}" if unit == "line" else f"{src.path}: {unit} {pos}"


def read_source(src: SourceConfig, index: int, on_duplicate: Callable[[Caption], None] | None = None,
                expected: str | None = None) -> Iterator[Caption]:
    """The source's captions in file order, at most `src.limit` rows, stripped of surrounding
    whitespace; raises InputError up front for a missing file or column and for a broken first row.

    Row ids must be unique within a source (an id names a caption's seed and sample id): a repeat is
    an InputError naming both positions, or with `duplicate_ids: drop` is passed to `on_duplicate`
    and skipped. Seen ids are kept as 16-byte digests.

    `expected`: the file's digest ("sha256:HEX") taken before; once the rows are exhausted the bytes
    read must match it (and the recipe's sha256 pin), else InputError (see the module docstring)."""
    cls = source_class(src, index)
    if is_hf_url(src.path) and not cls.file:
        raise InputError(source_field(index, "path"), "hf:// paths are for file sources ("
                         + ", ".join(c.name for c in registry().all("source") if c.file) + ")")
    check_images(src, index)
    f = open_source(src, index) if cls.file else None
    try:
        rows = _text_errors(cls.rows(src, index, f), src, index)
        first = next(rows, None)  # runs the reader's opening checks now, not at the caller's first next()
    except BaseException:
        if f is not None:
            f.close()
        raise
    rows = chain([first], rows) if first is not None else iter(())
    if src.limit is not None:
        rows = islice(rows, src.limit)
    return _checked(rows, src, index, on_duplicate, f, expected)


def _checked(rows, src: SourceConfig, index: int, on_duplicate, f: SourceFile | None, expected: str | None
             ) -> Iterator[Caption]:
    try:
        seen: set[bytes] = set()
        for rid, text, pos, image in rows:
            _check_row(rid, text, src, index, pos)
            caption = Caption(f"{src.name}:{rid}", text.strip(), src.name, image)
            key = hashlib.blake2b(str(rid).encode("utf-8"), digest_size=16).digest()
            if key in seen:
                if src.duplicate_ids != "drop":
                    raise _duplicate(src, index, rid, pos)
                if on_duplicate is not None:
                    on_duplicate(caption)
                continue
            seen.add(key)
            yield caption
        if f is not None:
            check_digest(f, expected, src.sha256, source_field(index, "sha256"))
    finally:
        if f is not None:
            f.close()


def _check_row(rid, text: str, src: SourceConfig, index: int, pos: int) -> None:
    """A row id is text or a finite number of bounded length; it and the caption are valid Unicode."""
    if type(rid) is str and len(rid) <= MAX_ID_CHARS and (rid.isascii() or not _SURROGATE.search(rid)) \
            and (text.isascii() or not _SURROGATE.search(text)):
        return  # every real row: one cheap test, the message is built only for a bad one
    where = position(src, pos)
    field = source_field(index, "id_column" if src.id_column else "path")
    if isinstance(rid, bool) or not isinstance(rid, (str, int, float)) or (isinstance(rid, float)
                                                                            and not math.isfinite(rid)):
        raise InputError(field, f"the id is {printable(repr(rid))[:80]}; an id is text or a finite number",
                         location=where)
    if isinstance(rid, str):
        if len(rid) > MAX_ID_CHARS:
            raise InputError(field, f"the id is {len(rid):,} characters long; ids have at most {MAX_ID_CHARS:,}",
                             location=where)
        bad = _SURROGATE.search(rid)
        if bad:
            raise InputError(field, f"the id {printable(repr(rid[:80]))} holds a lone surrogate"
                             f" {printable(bad.group())}, which is not a character", location=where)
    elif len(str(rid)) > MAX_ID_CHARS:  # an integer short enough to parse, too long to name a sample
        raise InputError(field, f"the id is a number of {len(str(rid)):,} digits; ids have at most"
                         f" {MAX_ID_CHARS:,} characters", location=where)
    bad = None if text.isascii() else _SURROGATE.search(text)
    if bad:
        key = "column" if "column" in registry().get("source", src.type).options else "path"
        raise InputError(source_field(index, key),
                         f"the caption holds a lone surrogate {printable(bad.group())} at character"
                         f" {bad.start() + 1:,}, which is not a character", location=where)


def _duplicate(src: SourceConfig, index: int, rid, pos: int) -> InputError:
    """The error for a repeated id, naming where it first appeared (found by reading again: rare)."""
    cls = registry().get("source", src.type)
    f = open_source(src, index) if cls.file else None
    try:
        first = next((p for r, _, p, _ in cls.rows(src, index, f) if str(r) == str(rid)), pos)
    finally:
        if f is not None:
            f.close()
    unit = cls.unit
    return InputError(source_field(index, "duplicate_ids"),
                      f"id {printable(repr(str(rid)))} repeats {unit} {first}; ids must be unique within a source"
                      f" (set {source_field(index, 'duplicate_ids')}: drop to keep the first row of each id)",
                      location=position(src, pos))
