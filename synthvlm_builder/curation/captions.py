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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ..atomic import atomic_open
from ..errors import BuildError, InputError
from ..recipe.config import Caption, CaptionsConfig
from ..registry import registry
from ..text import printable
from .reading import read_source, source_field
from .step import CaptionStep, FilterCount, NonEmptyFilter, ReservedTokensFilter, StepEnv, require


# --- the funnel and the pipeline -----------------------------------------------------------------

@dataclass
class Funnel:
    """Counts per source (read) and per filter (dropped, first examples; computed and cached for
    model steps); updated while streaming."""

    sources: list[dict] = field(default_factory=list)
    filters: list[FilterCount] = field(default_factory=list)
    truncated: Optional[int] = None  # set only when max_tokens truncates instead of dropping
    kept: int = 0
    usage: dict = field(default_factory=dict)  # model step -> what it cost (CaptionStep.usage), while streaming
    # A build's run of the stage: its id names the attempt in each model step's usage, and `on_batch` logs what
    # each batch spent (CaptionStep.on_batch), so the ledger tells a lost attempt's work (execution/ledger.py).
    attempt: Optional[str] = None
    on_batch: Optional[Callable] = None

    def to_dict(self) -> dict:
        out = {"sources": [dict(s) for s in self.sources], "filters": [f.to_dict() for f in self.filters],
               "read": sum(s["read"] for s in self.sources), "kept": self.kept}
        if self.truncated is not None:
            out["truncated"] = self.truncated
        if self.usage:  # only recipes with model steps: the funnel of others stays as it was
            out["usage"] = {name: {**{k: round(v, 3) if isinstance(v, float) else v for k, v in u.items()},
                                   **({"attempt": self.attempt} if self.attempt else {})}
                            for name, u in self.usage.items()}
        return out


@dataclass(frozen=True)
class Curation:
    captions: list[Caption]   # survivors: sources in recipe order, rows in file order
    funnel: dict              # Funnel.to_dict(): JSON-serialisable


def caption_steps(filters) -> list[tuple[type, object]]:
    """(step class, its config) of every caption step the recipe's filters turn on, in the order they
    run: the registry's (cheapest first)."""
    return [(cls, filters[cls.name]) for cls in registry().all("caption_step")
            if cls.name in filters and cls.enabled(filters[cls.name])]


def funnel_rows(filters, reserved: tuple[str, ...] = (), drops_duplicate_ids: bool = False
                ) -> list[tuple[str, str]]:
    """(funnel row, what it keeps) in the order a run reports them, from the recipe alone (for `plan`:
    nothing is loaded). A test checks the names against a real run's funnel."""
    rows = [("duplicate_ids", "the first row of each id")] if drops_duplicate_ids else []
    rows.append(("empty", "captions with text"))
    if reserved:
        rows.append(("reserved_tokens", f"none of {', '.join(reserved)}"))
    for cls, cfg in caption_steps(filters):
        rows += cls.funnel(cfg, filters)
    return rows


def _segmentation(filters) -> None:
    seg = filters.segmentation
    words = {"word_repetition", "flagged_words", "words"}
    if seg != "whitespace" and any(cls.name in words for cls, _ in caption_steps(filters)):
        require((seg,), "zh", f"captions.filters.segmentation: {seg}")


def preflight(filters) -> None:
    """What a build checks before it touches its output dir: the optional packages, every model
    step's models (here, cached or on the Hub) and the LLM endpoint; BuildError (exit 1) if not."""
    if filters.segmentation != "whitespace":
        require((filters.segmentation,), "zh", f"captions.filters.segmentation: {filters.segmentation}")
    for cls, cfg in caption_steps(filters):
        cls.preflight(cfg, filters)


def recipe_tokenizer(recipe):
    """The tokenizer `max_tokens` counts with (the generation model's, or with `max_tokens_tokenizer: clip`
    the scoring CLIP's), or None if unneeded. Failing to load it says why the caption stage needs it."""
    filters = recipe.captions.filters
    if filters.max_tokens is None:
        return None
    from ..models.preflight import ModelUnavailable
    from ..models.tokenizer import caption_tokenizer, clip_caption_tokenizer
    if filters.max_tokens_tokenizer == "clip":
        try:
            return clip_caption_tokenizer(recipe.score.clip.model)
        except ModelUnavailable as e:
            raise BuildError(f"captions.filters.max_tokens counts tokens with score.clip's tokenizer"
                             f" (max_tokens_tokenizer: clip): {e}") from None
    try:
        return caption_tokenizer(recipe.generate.model, recipe.generate.revision)
    except ModelUnavailable as e:
        raise BuildError(f"captions.filters.max_tokens counts tokens with the tokenizer of generate.model, so the"
                         f" caption stage loads it: {e} Or set captions.filters.max_tokens_tokenizer: clip to count"
                         f" with score.clip's tokenizer ({recipe.score.clip.model}), which needs no generator"
                         " files") from None


def build_steps(filters, tokenizer=None, reserved: tuple[str, ...] = (), device="cpu", cache_dir=None,
                funnel: Optional[Funnel] = None) -> list[CaptionStep]:
    """The caption steps a recipe's filters set up, in the order they run: the empty and reserved-token
    checks every build runs, then the recipe's (caption_steps). `tokenizer`: the caption tokenizer
    max_tokens counts with, or a function loading it."""
    _segmentation(filters)
    load = tokenizer if callable(tokenizer) or tokenizer is None else (lambda: tokenizer)
    env = StepEnv(filters, load, device, cache_dir, funnel)
    steps: list[CaptionStep] = [NonEmptyFilter()] + ([ReservedTokensFilter(reserved)] if reserved else [])
    return steps + [cls.from_config(value, env) for cls, value in caption_steps(filters)]


def iter_curate(cfg: CaptionsConfig, tokenizer=None, funnel: Optional[Funnel] = None,
                reserved: tuple[str, ...] = (), device="cpu", cache_dir=None,
                expected: Optional[dict[int, str]] = None) -> Iterator[Caption]:
    """Survivors, streamed; `funnel` (if given) is filled in as they go.  Every source is
    opened and checked before this returns, so input errors come before any output.
    `tokenizer`: the caption tokenizer max_tokens counts with (or a function loading it).
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
    steps = build_steps(cfg.filters, tokenizer, reserved, device, cache_dir, funnel)
    funnel.sources = [{"name": s.name, "type": s.type, "read": 0} for s in cfg.sources]
    funnel.filters = []
    model_steps = [step for step in steps
                   if not type(step).is_text_filter() and type(step).judge is not CaptionStep.judge]
    funnel.usage = {step.name: step.usage for step in model_steps}
    for step in model_steps:
        step.on_batch = funnel.on_batch
    if any(s.duplicate_ids == "drop" for s in cfg.sources):  # counted first: they never reach a filter
        duplicates = FilterCount("duplicate_ids")
        funnel.filters.append(duplicates)
    readers = []
    for i, src in enumerate(cfg.sources):
        def dropped(caption: Caption, stats=funnel.sources[i]) -> None:
            stats["read"] += 1
            duplicates.drop(caption)
        readers.append(read_source(src, i, dropped, (expected or {}).get(i)))
    survivors = _read(readers, funnel)
    fused: list[CaptionStep] = []
    for step in steps:
        funnel.filters.extend(step.counts.values())
        if type(step).is_text_filter():  # decided on the text alone: run together in one loop
            fused.append(step)
            continue
        if fused:
            survivors, fused = _text_filters(survivors, fused), []
        survivors = step.run(survivors)
    if fused:
        survivors = _text_filters(survivors, fused)
    return _count_kept(survivors, funnel)


def _read(readers, funnel: Funnel) -> Iterator[Caption]:
    for stats, rows in zip(funnel.sources, readers):
        for cap in rows:
            stats["read"] += 1
            yield cap


def _text_filters(captions: Iterator[Caption], steps: list[CaptionStep]) -> Iterator[Caption]:
    """Consecutive text filters in one loop: a caption stops at the first that drops it."""
    checks = [(step.stat, step.keep, next(iter(step.counts.values()))) for step in steps]
    for cap in captions:
        for stat, keep, count in checks:
            if not keep(stat(cap.text)):
                count.drop(cap)
                break
        else:
            yield cap


def _count_kept(captions: Iterator[Caption], funnel: Funnel) -> Iterator[Caption]:
    for caption in captions:
        funnel.kept += 1
        yield caption


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
