"""alnum_ratio: the share of a caption's characters that are letters or digits (Data-Juicer's
alphanumeric_filter); the paper keeps >= 0.60."""
from __future__ import annotations

from ..step import RATIO_RANGE, CaptionStep, RangeFilter
from ..textstats import DEL_ALNUM, char_ratio


class AlnumRatioFilter(CaptionStep):
    """alnum_ratio = (# chars c with c.isalnum()) / len(text); 0 for an empty text."""

    name = "alnum_ratio"
    summary = "share of letters and digits"
    order = 10
    legacy = "null"
    Config = RangeFilter
    schema = {**RATIO_RANGE,
              "description": "Alphanumeric ratio = (characters c with c.isalnum()) / len(text), 0 for an empty text"
                             " (Data-Juicer alphanumeric_filter). Keep min <= ratio <= max."}

    def stat(self, text: str) -> float:
        return char_ratio(text, DEL_ALNUM, str.isalnum)
