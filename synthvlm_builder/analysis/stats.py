"""The statistics `compare` reports: numpy only, seeded, so the same data give the same numbers.

- `mean_shift`: new mean - old mean with a percentile bootstrap confidence interval (each side resampled
  with replacement, BOOTSTRAP times, from a fixed seed);
- `ks_statistic`: the two-sample Kolmogorov-Smirnov statistic, the largest gap between the two empirical
  distribution functions (0: the same distribution of values, 1: no overlap);
- `caption_stats`: length in words, vocabulary size, distinct-2 (distinct word bigrams / all bigrams) and
  how many of a list of concepts the captions mention;
- `concepts`: that list: the shapes world's objects (a colour and a shape, models/shapes/world.py) for
  shapes-world data, else the most frequent words of both sides once stopwords are removed (no part-of-
  speech tagger is installed, so "nouns" are approximated by frequent content words; the report says so).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 1000
CONFIDENCE = 0.95
SEED = 0
TOP_CONCEPTS = 20
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
# Function words and the most common verbs of captions: what is left is mostly nouns and adjectives.
STOPWORDS = frozenset("""
a about above across after against along among an and another any are around as at be been before behind
being below beneath beside besides between beyond both but by can could did do does doing down during each
either every few for from has have having he her here hers him his how i if in inside into is it its itself
just like many may me might more most much my near neither next no nor not of off on one onto or other our
out outside over own per same she should since so some such than that the their them then there these they
this those through to too toward towards under until up upon us very was we were what when where which while
who whom whose why will with within without would you your yours shows showing show shown depicts depicting
image picture photo photograph view seen sits sitting stands standing looks looking two three
""".split())


@dataclass(frozen=True)
class Shift:
    old_mean: float
    new_mean: float
    delta: float
    low: float      # the confidence interval of delta
    high: float
    ks: float
    n_old: int
    n_new: int


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    return a[np.isfinite(a)]


def bootstrap_means(values: np.ndarray, rng: np.random.Generator, n: int = BOOTSTRAP) -> np.ndarray:
    """`n` means of resamples of `values` (with replacement), in chunks that keep memory flat."""
    out = np.empty(n)
    chunk = max(1, 2_000_000 // max(1, len(values)))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        out[start:start + m] = values[rng.integers(0, len(values), (m, len(values)))].mean(axis=1)
    return out


def ks_statistic(a, b) -> float:
    a, b = np.sort(_finite(a)), np.sort(_finite(b))
    if not len(a) or not len(b):
        return float("nan")
    x = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, x, "right") / len(a) - np.searchsorted(b, x, "right") / len(b)).max())


def mean_shift(old, new, seed: int = SEED) -> Shift:
    a, b = _finite(old), _finite(new)
    if not len(a) or not len(b):
        nan = float("nan")
        return Shift(float(a.mean()) if len(a) else nan, float(b.mean()) if len(b) else nan, nan, nan, nan,
                     nan, len(a), len(b))
    rng = np.random.default_rng(seed)
    deltas = bootstrap_means(b, rng) - bootstrap_means(a, rng)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return Shift(float(a.mean()), float(b.mean()), float(b.mean() - a.mean()), float(low), float(high),
                 ks_statistic(a, b), len(a), len(b))


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class CaptionStats:
    captions: int
    mean_words: float
    vocabulary: int
    distinct_2: float
    covered: int        # concepts mentioned at least once
    concepts: int       # concepts looked for
    missing: tuple      # the concepts not mentioned


def caption_stats(captions: list[str], concept_list: list[str]) -> CaptionStats:
    tokens = [words(c) for c in captions]
    bigrams = [pair for t in tokens for pair in zip(t, t[1:])]
    text = [" ".join(t) for t in tokens]
    covered = [c for c in concept_list if any(_mentions(t, c) for t in text)]
    return CaptionStats(
        captions=len(captions), mean_words=float(np.mean([len(t) for t in tokens])) if tokens else 0.0,
        vocabulary=len({w for t in tokens for w in t}),
        distinct_2=len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
        covered=len(covered), concepts=len(concept_list),
        missing=tuple(c for c in concept_list if c not in covered))


def _mentions(text: str, concept: str) -> bool:
    return re.search(rf"(?<!\S){re.escape(concept)}(?!\S)", text) is not None


def world_concepts() -> list[str]:
    from ..models.shapes import world
    return [f"{color} {shape}" for shape in world.SHAPES for color in world.COLORS]


def frequent_words(captions: list[str], n: int = TOP_CONCEPTS) -> list[str]:
    """The `n` most frequent words of `captions` that are not stopwords (ties: alphabetical)."""
    counts = Counter(w for c in captions for w in words(c) if w not in STOPWORDS and len(w) > 2)
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def concepts(old: list[str], new: list[str], shapes_world: bool) -> tuple[list[str], str]:
    """(the concepts, how they were chosen)."""
    if shapes_world:
        return world_concepts(), "the shapes world's objects (a colour and a shape: models/shapes/world.py)"
    return frequent_words(old + new), (f"the most frequent words of both sides' captions (up to {TOP_CONCEPTS}),"
                                       " stopwords removed (a stand-in for nouns: no part-of-speech tagger is"
                                       " installed)")
