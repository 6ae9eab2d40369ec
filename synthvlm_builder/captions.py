"""Caption stage: read the recipe's sources, apply the text filters, count the funnel.

    sources (recipe order) -> alnum_ratio -> special_char_ratio -> char_repetition
      -> word_repetition -> flagged_words -> words -> max_tokens -> dedupe -> survivors

Everything streams: readers yield one caption at a time (ijson for LLaVA's JSON
list, pyarrow row groups for parquet, `datasets` streaming for the Hub), and only
dedupe keeps state (16-byte digests).  Bad input raises InputError naming the
recipe field, and `read_source`/`iter_curate` open and check every source up to
its first row before they return, so a broken source fails before work starts.

Row ids: llava_json uses the record's `id` (or `id_column`); the others use
`id_column` when set, else the 0-based row index (jsonl/text: the line index, so
skipped blank lines still count; csv: the data row after the header;
parquet/hf_dataset: the row).  Caption ids are "<source name>:<row id>".
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from .config import Caption, CaptionsConfig, FiltersConfig, SourceConfig
from .errors import InputError
from .textfilters import (AlnumRatioFilter, CharRepetitionFilter, DedupFilter, FlaggedWordsFilter,
                          SpecialCharRatioFilter, TokenLimitFilter, WordCountFilter, WordRepetitionFilter)

FILE_TYPES = ("llava_json", "jsonl", "csv", "parquet", "text")
N_EXAMPLES = 3


def _field(index: int, name: str) -> str:
    return f"captions.sources[{index}].{name}"


def _caption_text(value, src: SourceConfig, index: int, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(_field(index, "column"),
                         f"{where}: {src.column!r} is {type(value).__name__}, not text")
    return value


def _missing_column(src: SourceConfig, index: int, name: str, columns, where: str) -> InputError:
    key = "column" if name == src.column else "id_column"
    return InputError(_field(index, key), f"{where}: no column {name!r} (columns: {', '.join(map(str, columns))})")


# --- where a file source's bytes are -------------------------------------------------------------

def _resolve_hf_uri(src: SourceConfig, index: int) -> Path:
    from huggingface_hub import hf_hub_download, parse_hf_uri
    from huggingface_hub.errors import (EntryNotFoundError, HfUriError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)
    try:
        uri = parse_hf_uri(src.path)
    except HfUriError as e:
        raise InputError(_field(index, "path"), str(e)) from None
    if not uri.path_in_repo:
        raise InputError(_field(index, "path"), f"{src.path} names a repository, not a file "
                         "(expected hf://datasets/<org>/<name>/<file>)")
    if uri.revision and src.revision and uri.revision != src.revision:
        raise InputError(_field(index, "revision"), f"{src.revision!r} contradicts the @{uri.revision} in path")
    revision = uri.revision or src.revision
    try:
        return Path(hf_hub_download(uri.id, uri.path_in_repo, repo_type=uri.type, revision=revision))
    except RevisionNotFoundError:
        raise InputError(_field(index, "revision"), f"{uri.id} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise InputError(_field(index, "path"), f"{uri.type} repository {uri.id} not found (or not accessible)") from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass
        raise InputError(_field(index, "path"), f"cannot download {src.path}: the Hub is unreachable or "
                         "HF_HUB_OFFLINE is set, and the file is not in the local cache") from None
    except EntryNotFoundError:
        raise InputError(_field(index, "path"), f"{uri.id} has no file {uri.path_in_repo!r}") from None
    except Exception as e:  # transport errors (httpx2), HTTP errors, cache I/O: all stop this source
        raise InputError(_field(index, "path"), f"cannot download {src.path}: {type(e).__name__}: {e}") from None


def _local_file(src: SourceConfig, index: int) -> Path:
    path = _resolve_hf_uri(src, index) if src.path.startswith("hf://") else Path(src.path)
    if not path.is_file():
        raise InputError(_field(index, "path"), f"no such file: {path}")
    return path


# --- readers: each yields (row_id, caption text) -------------------------------------------------

def _llava_rows(src: SourceConfig, index: int) -> Iterator[tuple[object, str]]:
    import ijson

    path, id_key = _local_file(src, index), src.id_column or "id"
    with open(path, "rb") as f:
        if not f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            raise InputError(_field(index, "path"), f"{path}: expected a JSON list of LLaVA records")
        f.seek(0)
        n = 0
        try:
            for rec in ijson.items(f, "item"):
                where = f"{path}: record {n}"
                if not isinstance(rec, dict) or id_key not in rec:
                    raise InputError(_field(index, "path"), f"{where} has no {id_key!r}")
                turns = rec.get("conversations") or []
                text = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None)
                if not isinstance(text, str):
                    raise InputError(_field(index, "path"), f"{where} (id {rec[id_key]}) has no 'gpt' turn with text")
                n += 1
                yield rec[id_key], text
        except ijson.JSONError as e:
            raise InputError(_field(index, "path"),
                             f"{path}: invalid JSON after record {n} (near byte {f.tell()}): {e}") from None


def _jsonl_rows(src: SourceConfig, index: int) -> Iterator[tuple[object, str]]:
    path = _local_file(src, index)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            if not line.strip():
                continue
            where = f"{path}:{lineno + 1}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(_field(index, "path"), f"{where}:{e.colno}: invalid JSON: {e.msg}") from None
            if not isinstance(rec, dict):
                raise InputError(_field(index, "path"), f"{where}: expected a JSON object per line")
            for name in filter(None, (src.column, src.id_column)):
                if name not in rec:
                    raise _missing_column(src, index, name, rec, where)
            yield (rec[src.id_column] if src.id_column else lineno), _caption_text(rec[src.column], src, index, where)


def _csv_rows(src: SourceConfig, index: int) -> Iterator[tuple[object, str]]:
    path = _local_file(src, index)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(_field(index, "path"), f"{path}: empty file, expected a header row")
            cols = []
            for name in filter(None, (src.column, src.id_column)):
                if name not in header:
                    raise _missing_column(src, index, name, header, f"{path} header")
                cols.append(header.index(name))
            for i, row in enumerate(reader):
                if not row:
                    continue
                if len(row) != len(header):
                    raise InputError(_field(index, "path"), f"{path}: data row {i} has {len(row)} fields, "
                                     f"the header has {len(header)}")
                yield (row[cols[1]] if src.id_column else i), row[cols[0]]
        except csv.Error as e:
            raise InputError(_field(index, "path"), f"{path}: line {reader.line_num}: {e}") from None


def _parquet_rows(src: SourceConfig, index: int) -> Iterator[tuple[object, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _local_file(src, index)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(_field(index, "path"), f"{path}: not a readable parquet file: {e}") from None
    schema = pf.schema_arrow
    names = list(dict.fromkeys(filter(None, (src.column, src.id_column))))
    for name in names:
        if name not in schema.names:
            raise _missing_column(src, index, name, schema.names, str(path))
    kind = schema.field(src.column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise InputError(_field(index, "column"), f"{path}: column {src.column!r} is {kind}, not text")
    row = 0
    for batch in pf.iter_batches(batch_size=8192, columns=names):  # one row group's slice at a time
        texts = batch.column(src.column).to_pylist()
        ids = batch.column(src.id_column).to_pylist() if src.id_column else range(row, row + len(texts))
        for rid, text in zip(ids, texts):
            yield rid, _caption_text(text, src, index, f"{path}: row {row}")
            row += 1


def _text_rows(src: SourceConfig, index: int) -> Iterator[tuple[object, str]]:
    path = _local_file(src, index)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            line = line.rstrip("\n")
            if line.strip():  # blank lines are separators, not empty captions
                yield lineno, line


def _hf_dataset_rows(src: SourceConfig, index: int) -> Iterator[tuple[object, str]]:
    import datasets

    try:
        # cache_dir read now rather than at `datasets` import, so a caller's env change takes effect
        ds = datasets.load_dataset(src.path, name=src.config, split=src.split, revision=src.revision,
                                   streaming=True, cache_dir=os.environ.get("HF_DATASETS_CACHE"))
    except FileNotFoundError as e:  # includes datasets' DatasetNotFoundError
        raise InputError(_field(index, "path"), f"dataset {src.path!r} not found: {e}") from None
    except ConnectionError as e:
        raise InputError(_field(index, "path"), f"cannot reach the Hub for {src.path!r}: {e}") from None
    except ValueError as e:  # datasets words these: "Bad split: ..." / "BuilderConfig 'x' not found ..."
        key = "split" if "split" in str(e).lower() else "config" if "config" in str(e).lower() else "path"
        raise InputError(_field(index, key), str(e)) from None
    names = list(dict.fromkeys(filter(None, (src.column, src.id_column))))
    if ds.column_names is not None:
        for name in names:
            if name not in ds.column_names:
                raise _missing_column(src, index, name, ds.column_names, src.path)
        ds = ds.select_columns(names)  # never decode other columns (images, embeddings)
    for i, rec in enumerate(ds):
        for name in names:
            if name not in rec:
                raise _missing_column(src, index, name, rec, f"{src.path}: row {i}")
        where = f"{src.path}: row {i}"
        yield (rec[src.id_column] if src.id_column else i), _caption_text(rec[src.column], src, index, where)


READERS: dict[str, Callable[[SourceConfig, int], Iterator[tuple[object, str]]]] = {
    "llava_json": _llava_rows, "jsonl": _jsonl_rows, "csv": _csv_rows,
    "parquet": _parquet_rows, "text": _text_rows, "hf_dataset": _hf_dataset_rows,
}


def _text_errors(rows: Iterator, src: SourceConfig, index: int) -> Iterator:
    try:
        yield from rows
    except UnicodeDecodeError as e:
        raise InputError(_field(index, "path"), f"{src.path}: not UTF-8 text ({e.reason})") from None


def read_source(src: SourceConfig, index: int) -> Iterator[Caption]:
    """The source's captions in file order, at most `src.limit`; raises InputError up front
    for a missing file or column and for a broken first row."""
    if src.type not in READERS:
        raise InputError(_field(index, "type"), f"unknown source type {src.type!r} (one of {', '.join(READERS)})")
    if src.path.startswith("hf://") and src.type not in FILE_TYPES:
        raise InputError(_field(index, "path"), f"hf:// paths are for file sources ({', '.join(FILE_TYPES)})")
    rows = _text_errors(READERS[src.type](src, index), src, index)
    first = next(rows, None)  # runs the reader's opening checks now, not at the caller's first next()
    rows = chain([first], rows) if first is not None else iter(())
    if src.limit is not None:
        rows = islice(rows, src.limit)
    name = src.name
    return (Caption(f"{name}:{rid}", text, name) for rid, text in rows)


# --- the funnel and the pipeline -----------------------------------------------------------------

@dataclass
class FilterCount:
    name: str
    dropped: int = 0
    examples: list[dict] = field(default_factory=list)

    def drop(self, caption: Caption) -> None:
        self.dropped += 1
        if len(self.examples) < N_EXAMPLES:
            self.examples.append({"id": caption.id, "text": caption.text})


@dataclass
class Funnel:
    """Counts per source (read) and per filter (dropped, first examples); updated while streaming."""

    sources: list[dict] = field(default_factory=list)
    filters: list[FilterCount] = field(default_factory=list)
    truncated: Optional[int] = None  # set only when max_tokens truncates instead of dropping
    kept: int = 0

    def to_dict(self) -> dict:
        out = {"sources": [dict(s) for s in self.sources],
               "filters": [{"name": f.name, "dropped": f.dropped, "examples": list(f.examples)} for f in self.filters],
               "read": sum(s["read"] for s in self.sources), "kept": self.kept}
        if self.truncated is not None:
            out["truncated"] = self.truncated
        return out


@dataclass(frozen=True)
class Curation:
    captions: list[Caption]   # survivors: sources in recipe order, rows in file order
    funnel: dict              # Funnel.to_dict(): JSON-serialisable


def build_filters(cfg: FiltersConfig, tokenizer=None) -> list:
    """The configured filters in application order (max_tokens and dedupe last)."""
    out: list = []
    if cfg.alnum_ratio:
        out.append(AlnumRatioFilter(cfg.alnum_ratio.min, cfg.alnum_ratio.max))
    if cfg.special_char_ratio:
        out.append(SpecialCharRatioFilter(cfg.special_char_ratio.min, cfg.special_char_ratio.max))
    if cfg.char_repetition:
        out.append(CharRepetitionFilter(cfg.char_repetition.rep_len, cfg.char_repetition.max))
    if cfg.word_repetition:
        out.append(WordRepetitionFilter(cfg.word_repetition.rep_len, cfg.word_repetition.max))
    if cfg.flagged_words:
        out.append(FlaggedWordsFilter(cfg.flagged_words.max))
    if cfg.words:
        out.append(WordCountFilter(cfg.words.min, cfg.words.max))
    if cfg.max_tokens is not None:
        if tokenizer is None:
            raise ValueError("captions.filters.max_tokens needs a tokenizer (models.caption_tokenizer)")
        out.append(TokenLimitFilter(tokenizer, cfg.max_tokens))
    if cfg.dedupe != "none":
        out.append(DedupFilter(cfg.dedupe))
    return out


def iter_curate(cfg: CaptionsConfig, tokenizer=None, funnel: Optional[Funnel] = None) -> Iterator[Caption]:
    """Survivors, streamed; `funnel` (if given) is filled in as they go.  Every source is
    opened and checked before this returns, so input errors come before any output."""
    funnel = funnel if funnel is not None else Funnel()
    names = [s.name for s in cfg.sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InputError(_field(i, "name"), f"duplicate source name {name!r}")
    filters = build_filters(cfg.filters, tokenizer)
    readers = [read_source(src, i) for i, src in enumerate(cfg.sources)]
    funnel.filters = [FilterCount(f.name) for f in filters]
    funnel.sources = [{"name": s.name, "type": s.type, "read": 0} for s in cfg.sources]
    if cfg.filters.max_tokens is not None and cfg.filters.truncate:
        funnel.truncated = 0
    return _run(readers, filters, funnel, cfg.filters.truncate)


def _run(readers, filters, funnel: Funnel, truncate: bool) -> Iterator[Caption]:
    text_checks, token_limit, dedupe = [], None, None
    for f, count in zip(filters, funnel.filters):
        if isinstance(f, TokenLimitFilter):
            token_limit, limit_count = f, count
        elif isinstance(f, DedupFilter):
            dedupe, dedupe_count = f, count
        else:
            text_checks.append((f.stat, f.keep, count))
    for stats, rows in zip(funnel.sources, readers):
        for cap in rows:
            stats["read"] += 1
            for stat, keep, count in text_checks:
                if not keep(stat(cap.text)):
                    count.drop(cap)
                    break
            else:  # passed the text filters
                if token_limit is not None and not token_limit.keep(token_limit.stat(cap.text)):
                    if not truncate:
                        limit_count.drop(cap)
                        continue
                    cap = Caption(cap.id, token_limit.truncate(cap.text), cap.source)
                    funnel.truncated += 1
                # after truncation: two captions that now read the same make the same image prompt
                if dedupe is not None and dedupe.is_duplicate(cap.text):
                    dedupe_count.drop(cap)
                    continue
                funnel.kept += 1
                yield cap


def curate(cfg: CaptionsConfig, tokenizer=None) -> Curation:
    """Run the caption stage in memory; see iter_curate for the streaming form."""
    funnel = Funnel()
    captions = list(iter_curate(cfg, tokenizer, funnel))
    return Curation(captions, funnel.to_dict())


# --- output ---------------------------------------------------------------------------------------

def write_jsonl(captions: Iterable[Caption], path) -> int:
    """Write {"id","text","source"} lines to a temp file beside `path`, then rename it into
    place, so readers never see a half-written file.  Returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for c in captions:
                f.write(json.dumps({"id": c.id, "text": c.text, "source": c.source}, ensure_ascii=False) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def iter_jsonl(path) -> Iterator[Caption]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                yield Caption(rec["id"], rec["text"], rec["source"])


def read_jsonl(path) -> list[Caption]:
    """Captions written by write_jsonl, in file order."""
    return list(iter_jsonl(path))


def _short(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return json.dumps(text if len(text) <= width else text[:width - 1] + "…", ensure_ascii=False)


def format_funnel(funnel: dict) -> str:
    """The funnel as the CLI prints it."""
    lines = ["sources:"]
    for s in funnel["sources"]:
        lines.append(f"  {s['name']} ({s['type']}): {s['read']:,} read")
    lines.append("filters:")
    for f in funnel["filters"]:
        extra = f" ({funnel['truncated']:,} truncated)" if f["name"] == "max_tokens" and "truncated" in funnel else ""
        lines.append(f"  {f['name']}: {f['dropped']:,} dropped{extra}")
        lines += [f"      {e['id']}  {_short(e['text'])}" for e in f["examples"]]
    if not funnel["filters"]:
        lines.append("  (none)")
    lines.append(f"kept: {funnel['kept']:,} of {funnel['read']:,}")
    return "\n".join(lines)
