"""char_repetition: how much of a caption is repeated character n-grams (Data-Juicer's
character_repetition_filter); the paper keeps <= 0.0937 at rep_len 10."""
from __future__ import annotations

import math
from collections import Counter
from operator import itemgetter
from typing import Optional

from .. import longtext
from ..step import REPETITION, CaptionStep, RepetitionFilter


class CharRepetitionFilter(CaptionStep):
    """char_rep_ratio = sum of the top-k counts of char rep_len-grams / # rep_len-grams, where
    k = min(floor(sqrt(# distinct grams)), # grams seen more than once); 0 if text shorter than rep_len."""

    name = "char_repetition"
    summary = "repeated character n-grams"
    order = 30
    legacy = "null"
    Config = RepetitionFilter
    schema = {**REPETITION,
              "description": "Character repetition ratio = (sum of the k largest counts of character rep_len-grams)"
                             " / (number of rep_len-grams), k = min(floor(sqrt(distinct grams)), grams seen more than"
                             " once); 0 when shorter than rep_len (character_repetition_filter). Keep ratio <= max."}

    def __init__(self, rep_len: int, max: Optional[float] = None, min: Optional[float] = None):
        super().__init__(min, max)
        self.rep_len = rep_len
        self._getters: dict[int, itemgetter] = {}

    @classmethod
    def from_config(cls, cfg: RepetitionFilter, env) -> "CharRepetitionFilter":
        return cls(cfg.rep_len, cfg.max)

    @classmethod
    def funnel(cls, cfg: RepetitionFilter, filters) -> list[tuple[str, str]]:
        return [(cls.name, f"<= {cfg.max:g} (rep_len {cfg.rep_len})")]

    def _grams(self, text: str, total: int):
        # One C call slicing out every gram: half the cost of a list comprehension.
        # Cached per length up to 512 grams (~1 MB of slice tuples); longer texts slice in Python.
        if total > 512:
            return [text[i:i + self.rep_len] for i in range(total)]
        getter = self._getters.get(total)
        if getter is None:
            getter = self._getters[total] = itemgetter(*(slice(i, i + self.rep_len) for i in range(total)))
        return getter(text)

    def stat(self, text: str) -> float:
        n = self.rep_len
        total = len(text) - n + 1
        if total <= 1:  # no gram, or one that cannot repeat
            return 0.0
        if len(text) > longtext.LONG_TEXT:  # a list of every gram would take ~70 bytes a character
            return longtext.char_repetition(text, n)
        grams = self._grams(text, total)
        if len(set(grams)) == total:  # the common case: no repeated gram, ratio 0
            return 0.0
        freqs = sorted(Counter(grams).values(), reverse=True)
        repeated = sum(1 for f in freqs if f > 1)
        k = min(math.isqrt(len(freqs)), repeated)  # isqrt == DJ's int(np.sqrt(.)) for all sizes here
        return sum(freqs[:k]) / total
