"""special_char_ratio: the share of special characters in a caption (Data-Juicer's
special_characters_filter); the paper keeps 0.165 to 0.420."""
from __future__ import annotations

from ..step import RATIO_RANGE, CaptionStep, RangeFilter
from ..textstats import DEL_SPECIAL, SPECIAL_CHARACTERS, char_ratio


class SpecialCharRatioFilter(CaptionStep):
    """special_char_ratio = (# chars in SPECIAL_CHARACTERS) / len(text); 0 for an empty text.

    SPECIAL_CHARACTERS = ASCII punctuation + digits + whitespace + DJ's 189 other symbols + emoji.
    """

    name = "special_char_ratio"
    summary = "share of special characters"
    order = 20
    legacy = "null"
    Config = RangeFilter
    schema = {**RATIO_RANGE,
              "description": "Special-character ratio = (characters in Data-Juicer's SPECIAL_CHARACTERS: ASCII"
                             " punctuation, digits, whitespace, its extra symbols and emoji) / len(text), 0 for an"
                             " empty text (special_characters_filter). Keep min <= ratio <= max."}

    def stat(self, text: str) -> float:
        return char_ratio(text, DEL_SPECIAL, SPECIAL_CHARACTERS.__contains__)
