"""The caption stage's step: the base of every caption step (registry kind "caption_step", one module
each in curation/steps/), the funnel's rows, and the configs steps share.

A step is either a text filter, deciding on a caption's text alone (`stat(text)`, kept when
`min <= stat <= max`, Data-Juicer's closed interval), or a model step, seeing captions in batches
(`judge(batch)`: memory stays flat however many stream through) that looks every caption up in its
cache first, computes only the misses and counts both, so a rerun shows 0 computed. A step that
changes or remembers captions (max_tokens, dedupe) overrides `run`.

What a step declares (registry.py Component): its recipe key under captions.filters, schema, config,
`order` (cost: the stage runs steps cheapest first, so no model scores, and no LLM is paid for, a caption
that a cheaper step drops), its funnel rows (`rows`, and `funnel` for what each keeps), the models it
loads (`models`), its preflight, and what names its cache entries (curation/cache.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable, ClassVar, Iterator, Optional

from ..recipe.config import Caption
from ..registry import Component

N_EXAMPLES = 3
EXAMPLE_CHARS = 1000  # an example shows a caption's start: a 30 MB junk caption stays out of stats.json


@dataclass
class FilterCount:
    """One funnel row: captions dropped (with the first examples); model steps also count scores
    computed now and found in the cache."""
    name: str
    dropped: int = 0
    examples: list[dict] = field(default_factory=list)
    computed: Optional[int] = None
    cached: Optional[int] = None

    def drop(self, caption: Caption, why: Optional[str] = None) -> None:
        self.dropped += 1
        if len(self.examples) < N_EXAMPLES:
            text = caption.text if len(caption.text) <= EXAMPLE_CHARS else caption.text[:EXAMPLE_CHARS - 1] + "…"
            self.examples.append({"id": caption.id, "text": text, **({"why": why} if why else {})})

    def to_dict(self) -> dict:
        out = {"name": self.name, "dropped": self.dropped, "examples": list(self.examples)}
        if self.computed is not None:
            out.update(computed=self.computed, cached=self.cached)
        return out


def batched(items, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


@dataclass
class StepEnv:
    """What a step may need beyond its own config: the filters section (segmentation, truncate), the
    caption tokenizer (loaded on first use), where model steps run and keep their caches."""
    filters: Any = None                           # recipe.captions.filters (a recipe/config.py Section)
    tokenizer: Optional[Callable[[], Any]] = None  # -> models/tokenizer.py CaptionTokenizer
    device: Any = "cpu"
    cache_dir: Any = None
    funnel: Any = None                            # curation/captions.py Funnel (max_tokens counts truncations)

    @property
    def segmentation(self) -> str:
        return getattr(self.filters, "segmentation", None) or "whitespace"


class CaptionStep(Component):
    """The base of every caption step (see the module docstring)."""

    kind = "caption_step"
    rows: ClassVar[tuple[str, ...]] = ()     # its funnel rows (default: its name)
    scored: ClassVar[tuple[str, ...]] = ()   # rows that count values computed now and found in the cache
    batch_size: ClassVar[int] = 32
    min: Optional[float] = None
    max: Optional[float] = None

    # --- declared from the recipe alone --------------------------------------------------------
    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether a recipe value turns the step on (dedupe: none does not)."""
        return cfg is not None

    @classmethod
    def funnel(cls, cfg, filters) -> list[tuple[str, str]]:
        """(funnel row, what it keeps) for `plan`: nothing is loaded. A test checks the names against
        a real run's funnel."""
        lo, hi = getattr(cfg, "min", None), getattr(cfg, "max", None)
        return [(cls.name, bounds(lo, hi))]

    @classmethod
    def preflight(cls, cfg, filters) -> None:
        """Before the output dir is touched: packages, models and endpoints it needs can be had."""

    @classmethod
    def from_config(cls, cfg, env: StepEnv) -> "CaptionStep":
        """The step a recipe value sets up: packages and models are checked now, models loaded lazily."""
        return cls(min=getattr(cfg, "min", None), max=getattr(cfg, "max", None))

    # --- running -------------------------------------------------------------------------------
    def __init__(self, min: Optional[float] = None, max: Optional[float] = None):
        self.min, self.max = min, max
        self.counts = self.new_counts()
        # What a model step cost (the build's cost ledger, execution/ledger.py): seconds in `judge`, and an
        # LLM step's requests and tokens (as its API's `usage` reports them). Text filters leave it empty.
        self.usage: dict = {}
        # Called after each batch of a model step with (step name, batch index, what that batch spent and how
        # many values it computed): the build logs it per attempt (execution/curate.py, execution/ledger.py).
        self.on_batch: Optional[Callable[[str, int, dict], None]] = None

    def new_counts(self) -> dict[str, "FilterCount"]:
        return {r: FilterCount(r, **({"computed": 0, "cached": 0} if r in self.scored else {}))
                for r in self.rows or (self.name,)}

    @classmethod
    def is_text_filter(cls) -> bool:
        """A step that decides on each caption's text alone, with the base's run (the stage fuses those)."""
        return cls.stat is not CaptionStep.stat and cls.run is CaptionStep.run

    def stat(self, text: str) -> float:
        raise NotImplementedError

    def keep(self, stat: float) -> bool:
        return (self.min is None or stat >= self.min) and (self.max is None or stat <= self.max)

    def __call__(self, text: str) -> bool:
        return self.keep(self.stat(text))

    def judge(self, batch: list[Caption]) -> list[Optional[tuple[str, Optional[str]]]]:
        """For each caption None (kept) or (funnel row, why) it is dropped in."""
        raise NotImplementedError

    def run(self, captions: Iterator[Caption]) -> Iterator[Caption]:
        if type(self).stat is not CaptionStep.stat:
            count = next(iter(self.counts.values()))
            for caption in captions:
                if self.keep(self.stat(caption.text)):
                    yield caption
                else:
                    count.drop(caption)
            return
        self.usage.setdefault("seconds", 0.0)
        try:
            for index, batch in enumerate(batched(captions, self.batch_size)):
                before, computed = dict(self.usage), self.computed()
                t0 = time.perf_counter()
                verdicts = self.judge(batch)
                self.usage["seconds"] += time.perf_counter() - t0
                if self.on_batch is not None:
                    spent = {k: v - before.get(k, 0) for k, v in self.usage.items()}
                    self.on_batch(self.name, index, {**spent, "computed": self.computed() - computed})
                for caption, verdict in zip(batch, verdicts):
                    if verdict is None:
                        yield caption
                    else:
                        self.counts[verdict[0]].drop(caption, verdict[1])
        finally:
            self.close()

    def computed(self) -> int:
        """Values computed so far (not found in the cache), over the step's rows."""
        return sum(c.computed or 0 for c in self.counts.values())

    def tally(self, row: str, computed: int, cached: int) -> None:
        self.counts[row].computed += computed
        self.counts[row].cached += cached

    def close(self) -> None:
        pass


# --- the steps every build runs first, whatever the recipe says ------------------------------------

class NonEmptyFilter(CaptionStep):
    """empty: a caption with no characters (after its surrounding whitespace is stripped) has nothing
    to draw; always applied first. (Not in curation/steps/: no recipe key turns it on or off.)"""

    name = "empty"

    def __init__(self):
        super().__init__(min=1)

    def stat(self, text: str) -> float:
        return len(text)


class ReservedTokensFilter(CaptionStep):
    """reserved_tokens: the number of the output format's reserved tokens (e.g. LLaVA's `<image>`) in
    the caption; must be 0, or a trainer would count two images for one."""

    name = "reserved_tokens"

    def __init__(self, tokens: tuple[str, ...]):
        super().__init__(max=0)
        self.tokens = tokens

    def stat(self, text: str) -> float:
        return sum(text.count(t) for t in self.tokens)


# --- configs and schema fragments steps share --------------------------------------------------------

@dataclass(frozen=True)
class RangeFilter:
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass(frozen=True)
class RepetitionFilter:
    rep_len: int
    max: float


@dataclass(frozen=True)
class MaxFilter:
    max: float


RATIO_RANGE = {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
    "min": {"description": "Smallest ratio kept (inclusive).", "type": "number", "minimum": 0, "maximum": 1},
    "max": {"description": "Largest ratio kept (inclusive).", "type": "number", "minimum": 0, "maximum": 1}}}

REPETITION = {"type": "object", "additionalProperties": False, "required": ["max"], "properties": {
    "rep_len": {"description": "n-gram length.", "type": "integer", "minimum": 1, "maximum": 100, "default": 10},
    "max": {"description": "Largest repetition ratio kept (inclusive).", "type": "number", "minimum": 0,
            "maximum": 1}}}


def bounds(low, high) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def segmented(filters) -> str:
    """The funnel's note on word segmentation, when it is not the default."""
    seg = getattr(filters, "segmentation", None) or "whitespace"
    return f", {seg} words" if seg != "whitespace" else ""


def in_range(value: float, low: Optional[float], high: Optional[float]) -> bool:
    """Data-Juicer's keep rule: the closed interval, a missing bound open."""
    return (low is None or value >= low) and (high is None or value <= high)


def require(modules: tuple[str, ...], extra: str, what: str) -> None:
    """Import an optional extra's packages up front; a missing one is a one-line BuildError (exit 1)."""
    import importlib

    from ..errors import BuildError
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise BuildError(f"{what} needs the {name!r} package: pip install -e \".[{extra}]\""
                             f" (or pip install 'synthvlm-builder[{extra}]')") from None
