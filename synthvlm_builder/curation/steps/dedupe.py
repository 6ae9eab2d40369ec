"""dedupe: a caption repeating an earlier one is dropped, so the first id survives; after max_tokens,
since two captions that truncation made the same make the same image prompt."""
from __future__ import annotations

import hashlib
from typing import Iterator

from ..step import CaptionStep
from ..textstats import normalize_caption


class DedupFilter(CaptionStep):
    """Drops a caption whose key was seen before, so the FIRST id survives.

    exact: the text itself; normalized: normalize_caption(text).  Keys are 16-byte
    blake2b digests, so memory grows by ~100 bytes per distinct caption, not by its text.
    """

    name = "dedupe"
    summary = "repeated captions"
    order = 80
    legacy = "null"
    schema = {'description': 'Drop repeated captions, keeping the first id: none, exact (identical text) or '
                             'normalized (casefolded, punctuation removed, whitespace collapsed). Runs after '
                             'truncation.',
              'enum': ['none', 'exact', 'normalized'],
              'default': 'exact'}

    def __init__(self, mode: str):
        if mode not in ("exact", "normalized"):
            raise ValueError(f"dedupe mode must be exact or normalized, not {mode!r}")
        super().__init__()
        self.mode = mode
        self.seen: set[bytes] = set()

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg not in (None, "none")

    @classmethod
    def from_config(cls, cfg: str, env) -> "DedupFilter":
        return cls(cfg)

    @classmethod
    def funnel(cls, cfg: str, filters) -> list[tuple[str, str]]:
        return [(cls.name, f"the first of each {cfg} text")]

    def key(self, text: str) -> bytes:
        if self.mode == "normalized":
            text = normalize_caption(text)
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def is_duplicate(self, text: str) -> bool:
        """True when seen before; otherwise remembers the text and returns False."""
        key = self.key(text)
        if key in self.seen:
            return True
        self.seen.add(key)
        return False

    def run(self, captions) -> Iterator:
        count = self.counts[self.name]
        for cap in captions:
            if self.is_duplicate(cap.text):
                count.drop(cap)
            else:
                yield cap
