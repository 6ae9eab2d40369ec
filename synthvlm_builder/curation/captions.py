"""Caption stage: read the recipe's sources, apply the text filters, count the funnel.

    sources (recipe order) -> alnum_ratio -> special_char_ratio -> char_repetition
      -> word_repetition -> flagged_words -> words -> max_tokens -> dedupe -> survivors

Everything streams; only dedupe keeps state (16-byte digests). Bad input raises
InputError naming the recipe field, and `iter_curate` opens and checks every
source before it returns, so a broken source fails before work starts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..atomic import atomic_open
from ..errors import BuildError, InputError
from ..recipe.config import Caption, CaptionsConfig, FiltersConfig
from .sources import read_source, source_field
from .textfilters import (AlnumRatioFilter, CharRepetitionFilter, DedupFilter, FlaggedWordsFilter, NonEmptyFilter,
                          ReservedTokensFilter,
                          SpecialCharRatioFilter, TokenLimitFilter, WordCountFilter, WordRepetitionFilter)

N_EXAMPLES = 3


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


def build_filters(cfg: FiltersConfig, tokenizer=None, reserved: tuple[str, ...] = ()) -> list:
    """The filters in application order: empty captions and reserved tokens of the output format
    (always), then the configured ones (max_tokens and dedupe last)."""
    out: list = [NonEmptyFilter()]
    if reserved:
        out.append(ReservedTokensFilter(reserved))
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


def recipe_tokenizer(recipe):
    """The tokenizer `max_tokens` counts with (the generation model's), or None if unneeded."""
    if recipe.captions.filters.max_tokens is None:
        return None
    from ..models.preflight import ModelUnavailable
    from ..models.tokenizer import caption_tokenizer
    try:
        return caption_tokenizer(recipe.generate.model, recipe.generate.revision)
    except ModelUnavailable as e:
        raise BuildError(str(e)) from None


def iter_curate(cfg: CaptionsConfig, tokenizer=None, funnel: Optional[Funnel] = None,
                reserved: tuple[str, ...] = ()) -> Iterator[Caption]:
    """Survivors, streamed; `funnel` (if given) is filled in as they go.  Every source is
    opened and checked before this returns, so input errors come before any output.
    `reserved`: tokens of the output format a caption must not contain (counted, dropped)."""
    funnel = funnel if funnel is not None else Funnel()
    names = [s.name for s in cfg.sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InputError(source_field(i, "name"), f"duplicate source name {name!r}")
    filters = build_filters(cfg.filters, tokenizer, reserved)
    funnel.sources = [{"name": s.name, "type": s.type, "read": 0} for s in cfg.sources]
    funnel.filters = [FilterCount(f.name) for f in filters]
    if any(s.duplicate_ids == "drop" for s in cfg.sources):  # counted first: they never reach a filter
        duplicates = FilterCount("duplicate_ids")
        funnel.filters.insert(0, duplicates)
    readers = []
    for i, src in enumerate(cfg.sources):
        def dropped(caption: Caption, stats=funnel.sources[i]) -> None:
            stats["read"] += 1
            duplicates.drop(caption)
        readers.append(read_source(src, i, dropped))
    if cfg.filters.max_tokens is not None and cfg.filters.truncate:
        funnel.truncated = 0
    return _run(readers, filters, funnel, cfg.filters.truncate)


def _run(readers, filters, funnel: Funnel, truncate: bool) -> Iterator[Caption]:
    text_checks, token_limit, dedupe = [], None, None
    for f, count in zip(filters, funnel.filters[len(funnel.filters) - len(filters):]):
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

def caption_line(c: Caption) -> str:
    """One caption as the JSONL line `captions --output` and the build's work dir both store."""
    return json.dumps({"id": c.id, "text": c.text, "source": c.source}, ensure_ascii=False) + "\n"


def parse_caption_line(line: str | bytes) -> Caption:
    rec = json.loads(line)
    return Caption(rec["id"], rec["text"], rec["source"])


def write_jsonl(captions: Iterable[Caption], path) -> int:
    """Write {"id","text","source"} lines atomically: readers never see a half-written file.
    Returns the number written."""
    n = 0
    with atomic_open(Path(path), "w") as f:
        for c in captions:
            f.write(caption_line(c))
            n += 1
    return n


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
