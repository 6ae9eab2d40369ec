"""Data-Juicer's caption statistics for captions longer than LONG_TEXT characters, in bounded memory.

textfilters.py computes each statistic on a tuple of every word and a list of every n-gram: for a
30 MB caption (a scraped page, a base64 blob: junk, but one line of a real file) that took 1.7 GB and
41 s for char_repetition alone. Here the same formulas run on
- words taken one block of the text at a time, each block ending just after one of DJ's word
  separators (' ', '\\n', '\\t'), so no word is ever split and the words are exactly DJ's;
- n-grams counted by fingerprint: two polynomial hashes modulo 32-bit primes, packed into one 64-bit
  number per gram, computed a block at a time into one array that is sorted in place. Memory is
  8 bytes per gram plus one block; counts are exact unless two different grams share a fingerprint
  (odds about grams^2 / 2^63 for natural text: under 1e-4 for a 30 MB caption).
Captions up to LONG_TEXT characters (all real ones) never come here: their statistics stay exactly as
textfilters.py computes them.
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    import numpy as np

LONG_TEXT = 1 << 16
BLOCK = 1 << 16
_P = (4294967291, 4294967279)  # the two largest primes below 2**32
_B = (911382323, 972663749)    # bases below 2**30: h * B + unit stays below 2**64
_MASK31 = (1 << 31) - 1


_DJ_SEPARATORS = (re.compile(r".*[ \n\t]", re.DOTALL), re.compile(r"[ \n\t]"))  # (last in a window, next)
_WHITESPACE = (re.compile(r".*\s", re.DOTALL), re.compile(r"\s"))


def text_blocks(text: str, any_space: bool = False) -> Iterator[str]:
    """`text` in consecutive blocks of about BLOCK characters, each ending just after one of DJ's word
    separators (with `any_space`, any whitespace character); a word longer than a block makes a longer
    block: words are never split."""
    last, following = _WHITESPACE if any_space else _DJ_SEPARATORS
    pos, n = 0, len(text)
    while pos < n:
        end = min(pos + BLOCK, n)
        if end < n:
            m = last.match(text, pos, end) or following.search(text, end)
            end = m.end() if m else n
        yield text[pos:end]
        pos = end


def words(text: str, lower: bool, segmentation: str) -> Iterator[tuple[str, ...]]:
    """DJ's refined words of `text` (textfilters.dj_words), one block's tuple at a time."""
    from .textstats import dj_words
    for block in text_blocks(text):
        yield dj_words(block, lower, segmentation)


def _fingerprints(total: int, n: int, units: Callable[[int, int], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The sorted 64-bit fingerprints of the `total` n-grams of a sequence; `units(a, b)` gives two
    uint64 arrays (each value below 2**31) for the sequence's items a..b-1."""
    import numpy as np

    out = np.empty(total, np.uint64)
    for a in range(0, total, BLOCK):
        b = min(a + BLOCK, total)
        halves = []
        for u, p, base in zip(units(a, b + n - 1), map(np.uint64, _P), map(np.uint64, _B)):
            h = np.zeros(b - a, np.uint64)
            for j in range(n):
                h *= base
                h += u[j:j + b - a]
                h %= p
            halves.append(h)
        out[a:b] = (halves[0] << np.uint64(32)) | halves[1]
    out.sort()
    return out


def _run_lengths(fingerprints: np.ndarray) -> Iterator[np.ndarray]:
    """The lengths of the runs of equal values in a sorted array, a block of them at a time."""
    import numpy as np

    start, n = 0, len(fingerprints)
    for a in range(0, n, BLOCK):
        b = min(a + BLOCK + 1, n)
        ends = np.flatnonzero(fingerprints[a + 1:b] != fingerprints[a:b - 1]) + a + 1
        if len(ends):
            yield np.diff(np.concatenate(([start], ends)))
            start = int(ends[-1])
    yield np.array([n - start])


def char_repetition(text: str, n: int) -> float:
    """CharRepetitionFilter.stat for a long text (see there for the formula)."""
    import numpy as np

    total = len(text) - n + 1

    def units(a: int, b: int):
        codes = np.frombuffer(text[a:b].encode("utf-32-le"), np.uint32).astype(np.uint64)
        return codes, codes

    distinct, repeated, k_max, top = 0, 0, math.isqrt(total) + 1, np.zeros(0, np.int64)
    for lengths in _run_lengths(_fingerprints(total, n, units)):
        distinct += len(lengths)
        many = lengths[lengths > 1]
        repeated += len(many)
        top = np.concatenate((top, many))
        if len(top) > k_max:
            top = np.partition(top, len(top) - k_max)[-k_max:]
    k = min(math.isqrt(distinct), repeated)
    return float(np.sort(top)[::-1][:k].sum()) / total if k else 0.0


def word_repetition(text: str, n: int, segmentation: str) -> float:
    """WordRepetitionFilter.stat for a long text: words compared by a 62-bit digest of each."""
    import numpy as np

    keys = [np.fromiter((hash(w) for w in block), np.int64, len(block)) for block in words(text, True, segmentation)]
    keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    total = len(keys) - n + 1
    if total <= 0:
        return 0.0

    def units(a: int, b: int):
        k = keys[a:b].view(np.uint64)
        return k & np.uint64(_MASK31), (k >> np.uint64(32)) & np.uint64(_MASK31)

    repeated = sum(int(lengths[lengths > 1].sum()) for lengths in _run_lengths(_fingerprints(total, n, units)))
    return repeated / total


def word_count(text: str, segmentation: str) -> int:
    return sum(len(block) for block in words(text, False, segmentation))


def flagged_ratio(text: str, flagged: frozenset[str], segmentation: str) -> float:
    """FlaggedWordsFilter.stat for a long text (with jieba, each adjacent pair joined counts too)."""
    count, total, last = 0, 0, ()
    for block in words(text, True, segmentation):
        if segmentation == "jieba":
            chain = last + block  # the pair across the block boundary too
            block = block + tuple(a + b for a, b in zip(chain, chain[1:]))
            last = chain[-1:]
        total += len(block)
        count += sum(1 for w in block if w in flagged)
    return min(1.0, count / total) if total else 0.0
