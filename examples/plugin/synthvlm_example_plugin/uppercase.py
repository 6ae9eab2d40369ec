"""uppercase_ratio: the share of a caption's letters that are capitals. Shouted captions ("A RED CIRCLE
ON BLUE!!!") are usually spam or titles, not descriptions."""
from __future__ import annotations

from synthvlm_builder.plugins import RATIO_RANGE, CaptionStep, RangeFilter


class UppercaseRatioFilter(CaptionStep):
    """uppercase_ratio = (# uppercase letters) / (# letters); 0 for a caption without letters."""

    name = "uppercase_ratio"
    summary = "share of uppercase letters"
    order = 65  # a text statistic: after the built-in ones, before max_tokens (70) and dedupe (80)
    Config = RangeFilter
    schema = {**RATIO_RANGE, "description": "Share of a caption's letters that are uppercase (0 without letters)."
              " Keep min <= ratio <= max."}

    def stat(self, text: str) -> float:
        letters = [c for c in text if c.isalpha()]
        return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
