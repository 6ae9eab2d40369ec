"""words: how many words a caption has (Data-Juicer's words_num_filter)."""
from __future__ import annotations

from typing import Optional

from .. import longtext
from ..step import CaptionStep, RangeFilter, bounds, segmented
from ..textstats import dj_words


class WordCountFilter(CaptionStep):
    """words = # DJ words (not lowercased; stripped of special characters; empty ones dropped)."""

    name = "words"
    summary = "number of words"
    order = 60
    legacy = "null"
    Config = RangeFilter
    schema = {'description': 'Number of words (as split above). Keep min <= words <= max.',
              'type': 'object',
              'additionalProperties': False,
              'minProperties': 1,
              'properties': {'min': {'description': 'Fewest words a caption may have.',
                                     'type': 'integer',
                                     'minimum': 0,
                                     'maximum': 100000},
                             'max': {'description': 'Most words a caption may have.',
                                     'type': 'integer',
                                     'minimum': 1,
                                     'maximum': 100000}}}

    def __init__(self, min: Optional[float] = None, max: Optional[float] = None, segmentation: str = "whitespace"):
        super().__init__(min, max)
        self.segmentation = segmentation

    @classmethod
    def from_config(cls, cfg: RangeFilter, env) -> "WordCountFilter":
        return cls(cfg.min, cfg.max, segmentation=env.segmentation)

    @classmethod
    def funnel(cls, cfg: RangeFilter, filters) -> list[tuple[str, str]]:
        return [(cls.name, bounds(cfg.min, cfg.max) + segmented(filters))]

    def stat(self, text: str) -> float:
        if len(text) > longtext.LONG_TEXT:
            return longtext.word_count(text, self.segmentation)
        return len(dj_words(text, False, self.segmentation))
