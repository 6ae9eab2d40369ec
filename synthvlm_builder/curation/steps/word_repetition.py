"""word_repetition: how much of a caption is repeated word n-grams (Data-Juicer's
word_repetition_filter); the paper keeps <= 0.0309 at rep_len 10."""
from __future__ import annotations

from collections import Counter
from typing import Optional

from .. import longtext
from ..step import REPETITION, CaptionStep, RepetitionFilter, segmented
from ..textstats import dj_words


class WordRepetitionFilter(CaptionStep):
    """word_rep_ratio = sum of counts of word rep_len-grams seen more than once / # word rep_len-grams
    (DJ words, lowercased); 0 if fewer than rep_len words."""

    name = "word_repetition"
    summary = "repeated word n-grams"
    order = 40
    legacy = "null"
    Config = RepetitionFilter
    schema = {**REPETITION,
              "description": "Word repetition ratio = (summed counts of lowercased word rep_len-grams seen more than"
                             " once) / (number of word rep_len-grams); 0 with fewer than rep_len words"
                             " (word_repetition_filter). Keep ratio <= max."}

    def __init__(self, rep_len: int, max: Optional[float] = None, min: Optional[float] = None,
                 segmentation: str = "whitespace"):
        super().__init__(min, max)
        self.rep_len, self.segmentation = rep_len, segmentation

    @classmethod
    def from_config(cls, cfg: RepetitionFilter, env) -> "WordRepetitionFilter":
        return cls(cfg.rep_len, cfg.max, segmentation=env.segmentation)

    @classmethod
    def funnel(cls, cfg: RepetitionFilter, filters) -> list[tuple[str, str]]:
        return [(cls.name, f"<= {cfg.max:g} (rep_len {cfg.rep_len}{segmented(filters)})")]

    def stat(self, text: str) -> float:
        if len(text) > longtext.LONG_TEXT:
            return longtext.word_repetition(text, self.rep_len, self.segmentation)
        words, n = dj_words(text, True, self.segmentation), self.rep_len
        total = len(words) - n + 1
        if total <= 0:
            return 0.0
        # Tuples stand in for DJ's ' '.join(...): no word holds a space or is empty, so
        # two n-grams are equal as tuples exactly when they are equal as joined strings.
        grams = [words[i:i + n] for i in range(total)]
        if len(set(grams)) == total:
            return 0.0
        return sum(f for f in Counter(grams).values() if f > 1) / total
