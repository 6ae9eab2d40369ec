"""Caption stage: read the recipe's sources, apply the filters, count the funnel.

    sources (recipe order) -> empty -> reserved_tokens -> alnum_ratio -> special_char_ratio
      -> char_repetition -> word_repetition -> flagged_words -> words -> max_tokens -> dedupe
      -> perplexity -> source_image (missing, clip, itm) -> llm_judge -> survivors

Cheapest first: every model step (steps.py) comes after dedupe, so none scores, or pays for, a
repeat. Everything streams: dedupe keeps 16-byte digests and each model step one batch. Bad input
raises InputError naming the recipe field, and `iter_curate` opens and checks every source (and
sets up every model step) before it returns, so a broken source fails before work starts.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..atomic import atomic_open
from ..errors import BuildError, InputError
from ..recipe.config import Caption, CaptionsConfig, FiltersConfig
from ..text import printable
from .sources import read_source, source_field
from .steps import FilterCount, require
from .textfilters import (AlnumRatioFilter, CharRepetitionFilter, DedupFilter, FlaggedWordsFilter, NonEmptyFilter,
                          ReservedTokensFilter,
                          SpecialCharRatioFilter, TokenLimitFilter, WordCountFilter, WordRepetitionFilter)


# --- the funnel and the pipeline -----------------------------------------------------------------

@dataclass
class Funnel:
    """Counts per source (read) and per filter (dropped, first examples; computed and cached for
    model steps); updated while streaming."""

    sources: list[dict] = field(default_factory=list)
    filters: list[FilterCount] = field(default_factory=list)
    truncated: Optional[int] = None  # set only when max_tokens truncates instead of dropping
    kept: int = 0

    def to_dict(self) -> dict:
        out = {"sources": [dict(s) for s in self.sources], "filters": [f.to_dict() for f in self.filters],
               "read": sum(s["read"] for s in self.sources), "kept": self.kept}
        if self.truncated is not None:
            out["truncated"] = self.truncated
        return out


@dataclass(frozen=True)
class Curation:
    captions: list[Caption]   # survivors: sources in recipe order, rows in file order
    funnel: dict              # Funnel.to_dict(): JSON-serialisable


def build_filters(cfg: FiltersConfig, tokenizer=None, reserved: tuple[str, ...] = ()) -> list:
    """The text filters in application order: empty captions and reserved tokens of the output format
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
    seg = cfg.segmentation
    if seg != "whitespace" and (cfg.word_repetition or cfg.flagged_words or cfg.words):
        require((seg,), "zh", f"captions.filters.segmentation: {seg}")
    if cfg.word_repetition:
        out.append(WordRepetitionFilter(cfg.word_repetition.rep_len, cfg.word_repetition.max, segmentation=seg))
    if cfg.flagged_words:
        out.append(FlaggedWordsFilter(cfg.flagged_words.max, segmentation=seg))
    if cfg.words:
        out.append(WordCountFilter(cfg.words.min, cfg.words.max, segmentation=seg))
    if cfg.max_tokens is not None:
        if tokenizer is None:
            raise ValueError("captions.filters.max_tokens needs a tokenizer (models.caption_tokenizer)")
        out.append(TokenLimitFilter(tokenizer, cfg.max_tokens))
    if cfg.dedupe != "none":
        out.append(DedupFilter(cfg.dedupe))
    return out


def _bounds(low, high) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def funnel_rows(cfg: FiltersConfig, reserved: tuple[str, ...] = (), drops_duplicate_ids: bool = False
                ) -> list[tuple[str, str]]:
    """(funnel row, what it keeps) in the order a run reports them, from the recipe alone (for `plan`:
    nothing is loaded). A test checks the names against a real run's funnel."""
    seg = f", {cfg.segmentation} words" if cfg.segmentation != "whitespace" else ""
    rows = [("duplicate_ids", "the first row of each id")] if drops_duplicate_ids else []
    rows.append(("empty", "captions with text"))
    if reserved:
        rows.append(("reserved_tokens", f"none of {', '.join(reserved)}"))
    for name in ("alnum_ratio", "special_char_ratio"):
        if getattr(cfg, name):
            rows.append((name, _bounds(getattr(cfg, name).min, getattr(cfg, name).max)))
    for name in ("char_repetition", "word_repetition"):
        if getattr(cfg, name):
            r = getattr(cfg, name)
            rows.append((name, f"<= {r.max:g} (rep_len {r.rep_len}{seg if name == 'word_repetition' else ''})"))
    if cfg.flagged_words:
        rows.append(("flagged_words", f"<= {cfg.flagged_words.max:g}{seg}"))
    if cfg.words:
        rows.append(("words", _bounds(cfg.words.min, cfg.words.max) + seg))
    if cfg.max_tokens is not None:
        rows.append(("max_tokens", f"<= {cfg.max_tokens}" + (" (longer ones truncated)" if cfg.truncate else "")))
    if cfg.dedupe != "none":
        rows.append(("dedupe", f"the first of each {cfg.dedupe} text"))
    if cfg.perplexity:
        rows.append(("perplexity", f"<= {cfg.perplexity.max:g} (KenLM {cfg.perplexity.model})"))
    images = cfg.source_image
    if images:
        rows.append(("source_image_missing", "captions whose original image can be read"))
    if images and images.clip:
        rows.append(("source_image_clip", f"cosine {_bounds(images.clip.min, images.clip.max)} ({images.clip.model}"
                     + (f", {images.clip.pretrained})" if images.clip.pretrained else ")")))
    if images and images.itm:
        rows.append(("source_image_itm", f"BLIP ITM {_bounds(images.itm.min, images.itm.max)} ({images.itm.model})"))
    if cfg.llm_judge:
        rows.append(("llm_judge", f"{cfg.llm_judge.yes!r} from {cfg.llm_judge.model} at {cfg.llm_judge.base_url}"))
    return rows


def model_steps(cfg: FiltersConfig, device="cpu", cache_dir=None) -> list:
    """The model steps in application order, cheapest first. Each checks its packages and models
    now, and loads a model only at its first cache miss."""
    out: list = []
    if cfg.perplexity:
        from .perplexity import PerplexityStep
        out.append(PerplexityStep(cfg.perplexity, cache_dir))
    if cfg.source_image:
        from .source_images import SourceImageStep
        out.append(SourceImageStep(cfg.source_image, device, cache_dir))
    if cfg.llm_judge:
        from .llm_judge import LlmJudgeStep
        out.append(LlmJudgeStep(cfg.llm_judge, cache_dir))
    return out


def preflight(cfg: FiltersConfig) -> None:
    """What a build checks before it touches its output dir: the optional packages, every model
    step's models (here, cached or on the Hub) and the LLM endpoint; BuildError (exit 1) if not."""
    if cfg.segmentation != "whitespace":
        require((cfg.segmentation,), "zh", f"captions.filters.segmentation: {cfg.segmentation}")
    if cfg.perplexity:
        from .perplexity import check_available
        check_available(cfg.perplexity)
    if cfg.source_image:
        from .source_images import check_available
        check_available(cfg.source_image)
    if cfg.llm_judge:
        from .llm_judge import check_endpoint
        check_endpoint(cfg.llm_judge)


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
                reserved: tuple[str, ...] = (), device="cpu", cache_dir=None,
                expected: Optional[dict[int, str]] = None) -> Iterator[Caption]:
    """Survivors, streamed; `funnel` (if given) is filled in as they go.  Every source is
    opened and checked before this returns, so input errors come before any output.
    `reserved`: tokens of the output format a caption must not contain (counted, dropped).
    `device`: where source-image models run; `cache_dir`: the model steps' caches (default
    $SYNTHVLM_CACHE/curation). `expected`: source index -> the digest its file had when the build
    took its content identity; a file source whose bytes differ raises InputError once read (so a
    consumer that writes the survivors atomically keeps none of them)."""
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
    text_counts = list(funnel.filters[len(funnel.filters) - len(filters):])
    readers = []
    for i, src in enumerate(cfg.sources):
        def dropped(caption: Caption, stats=funnel.sources[i]) -> None:
            stats["read"] += 1
            duplicates.drop(caption)
        readers.append(read_source(src, i, dropped, (expected or {}).get(i)))
    if cfg.filters.max_tokens is not None and cfg.filters.truncate:
        funnel.truncated = 0
    survivors = _run(readers, filters, text_counts, funnel, cfg.filters.truncate)
    for step in model_steps(cfg.filters, device, cache_dir):
        funnel.filters.extend(step.counts.values())
        survivors = step.run(survivors)
    return _count_kept(survivors, funnel)


def _count_kept(captions: Iterator[Caption], funnel: Funnel) -> Iterator[Caption]:
    for caption in captions:
        funnel.kept += 1
        yield caption


def _run(readers, filters, counts, funnel: Funnel, truncate: bool) -> Iterator[Caption]:
    text_checks, token_limit, dedupe = [], None, None
    for f, count in zip(filters, counts):
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
                    cap = dataclasses.replace(cap, text=token_limit.truncate(cap.text))
                    funnel.truncated += 1
                # after truncation: two captions that now read the same make the same image prompt
                if dedupe is not None and dedupe.is_duplicate(cap.text):
                    dedupe_count.drop(cap)
                    continue
                yield cap


def curate(cfg: CaptionsConfig, tokenizer=None, **options) -> Curation:
    """Run the caption stage in memory; see iter_curate for the streaming form (and `options`)."""
    funnel = Funnel()
    captions = list(iter_curate(cfg, tokenizer, funnel, **options))
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
    """The funnel as the CLI prints it; names, ids, texts and reasons come from the recipe and the data,
    so they are shown escaped (text.py: printable)."""
    lines = ["sources:"]
    for s in funnel["sources"]:
        lines.append(f"  {printable(s['name'])} ({printable(s['type'])}): {s['read']:,} read")
    lines.append("filters:")
    for f in funnel["filters"]:
        extra = f" ({funnel['truncated']:,} truncated)" if f["name"] == "max_tokens" and "truncated" in funnel else ""
        if "computed" in f:
            extra += f" ({f['computed']:,} computed, {f['cached']:,} cached)"
        lines.append(f"  {f['name']}: {f['dropped']:,} dropped{extra}")
        lines += [f"      {printable(e['id'])}  {printable(_short(e['text']))}"
                  + (f"  ({printable(e['why'])})" if "why" in e else "") for e in f["examples"]]
    if not funnel["filters"]:
        lines.append("  (none)")
    lines.append(f"kept: {funnel['kept']:,} of {funnel['read']:,}")
    return "\n".join(lines)
