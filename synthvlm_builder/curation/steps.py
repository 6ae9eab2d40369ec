"""The funnel's rows, and the caption stage's model steps: perplexity, source-image agreement and the
LLM judge. A model step sees captions in batches (memory stays flat however many stream through),
looks every caption up in its cache first and computes only the misses; it counts both, so a rerun
shows 0 computed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Iterator, Optional

from ..recipe.config import Caption

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


class BatchStep:
    """Optional base of a model step: `judge` a batch, get for each caption None (kept) or
    (funnel row, why) it is dropped in. `rows` name the funnel rows; `scored` those that count
    computed and cached values."""

    rows: tuple[str, ...] = ()
    scored: tuple[str, ...] = ()
    batch_size = 32

    def __init__(self):
        self.counts = {r: FilterCount(r, **({"computed": 0, "cached": 0} if r in self.scored else {}))
                       for r in self.rows}

    def judge(self, batch: list[Caption]) -> list[Optional[tuple[str, Optional[str]]]]:
        raise NotImplementedError

    def run(self, captions) -> Iterator[Caption]:
        try:
            for batch in batched(captions, self.batch_size):
                for caption, verdict in zip(batch, self.judge(batch)):
                    if verdict is None:
                        yield caption
                    else:
                        self.counts[verdict[0]].drop(caption, verdict[1])
        finally:
            self.close()

    def tally(self, row: str, computed: int, cached: int) -> None:
        self.counts[row].computed += computed
        self.counts[row].cached += cached

    def close(self) -> None:
        pass


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
