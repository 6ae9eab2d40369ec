"""Each Data-Juicer statistic on hand-written captions, at its boundary.

The expected ratios are worked out by hand in the comments; a filter keeps a
caption when min <= stat <= max (closed, like Data-Juicer).
"""
import pytest

from synthvlm_builder.curation.steps.alnum_ratio import AlnumRatioFilter
from synthvlm_builder.curation.steps.char_repetition import CharRepetitionFilter
from synthvlm_builder.curation.steps.dedupe import DedupFilter
from synthvlm_builder.curation.steps.flagged_words import FlaggedWordsFilter
from synthvlm_builder.curation.steps.special_char_ratio import SpecialCharRatioFilter
from synthvlm_builder.curation.steps.word_repetition import WordRepetitionFilter
from synthvlm_builder.curation.steps.words import WordCountFilter
from synthvlm_builder.curation.textstats import SPECIAL_CHARACTERS, dj_words, flagged_words_en, normalize_caption


def test_alnum_ratio_at_the_paper_threshold():
    f = AlnumRatioFilter(min=0.6)
    # "cat, dog!!": c a t , _ d o g ! ! = 10 chars, 6 alphanumeric -> 6/10 = 0.6
    assert f.stat("cat, dog!!") == 6 / 10
    assert f("cat, dog!!")                      # at 0.6: kept (inclusive)
    # one more "!": 11 chars, 6 alphanumeric -> 6/11 = 0.545 < 0.6
    assert f.stat("cat, dog!!!") == pytest.approx(6 / 11)
    assert not f("cat, dog!!!")
    # "cats, dog!!": 11 chars, 7 alphanumeric -> 7/11 = 0.636 > 0.6
    assert f.stat("cats, dog!!") == pytest.approx(7 / 11)
    assert f("cats, dog!!")
    # characters, not tokens: "café 1" has 5 alnum chars (é counts) of 6
    assert f.stat("café 1") == pytest.approx(5 / 6)
    assert f.stat("") == 0.0


def test_special_char_ratio_range():
    text = "a cat, 2 dogs."
    # 14 chars; special: 3 spaces + "," + "2" (digits are special) + "." = 6 -> 6/14 = 0.4286
    assert SpecialCharRatioFilter().stat(text) == pytest.approx(6 / 14)
    assert SpecialCharRatioFilter(min=0.165, max=6 / 14)(text)           # at max: kept
    assert not SpecialCharRatioFilter(min=0.165, max=0.42)(text)         # paper max 0.42 is just below
    assert SpecialCharRatioFilter(min=0.165, max=0.43)(text)             # just above: kept
    assert not SpecialCharRatioFilter(min=6 / 14 + 1e-9)(text)           # min just above the stat
    # without the final ".": 13 chars, 5 special -> 5/13 = 0.3846, inside 0.165..0.42
    assert SpecialCharRatioFilter(min=0.165, max=0.42)("a cat, 2 dogs")
    # "bigdog": 0 special -> 0.0 < 0.165: dropped by the paper's lower bound
    assert not SpecialCharRatioFilter(min=0.165, max=0.42)("bigdog")


def test_special_characters_are_data_juicers_set():
    # ASCII punctuation, digits, whitespace; DJ's extra symbols (curly quotes, bullets,
    # the soft hyphen U+00AD and BOM U+FEFF among them); and single-code-point emoji.
    for c in ",.!?#$0 9\t\n\u2019\u201c\u2022\u00ad\ufeff\u2014\U0001F600":
        assert c in SPECIAL_CHARACTERS, repr(c)
    for c in "aZ\u00e9\u4e01":  # letters are not special (U+4E00 is in DJ's set, U+4E01 is not)
        assert c not in SPECIAL_CHARACTERS, repr(c)
    assert "_" in SPECIAL_CHARACTERS and "\u4e00" in SPECIAL_CHARACTERS


def test_char_repetition_uses_the_sqrt_top_rule():
    f = CharRepetitionFilter(rep_len=2)
    # "aabbaabb" 2-grams: aa ab bb ba aa ab bb = 7; counts aa:2 ab:2 bb:2 ba:1 -> 4 distinct.
    # top-k with k = min(floor(sqrt(4)) = 2, 3 repeated) = 2 -> (2 + 2) / 7, not all repeats 6/7.
    assert f.stat("aabbaabb") == pytest.approx(4 / 7)
    assert CharRepetitionFilter(rep_len=5).stat("abcd") == 0.0  # shorter than rep_len: no grams


def test_char_repetition_at_the_paper_threshold():
    f = CharRepetitionFilter(rep_len=10, max=0.0937)
    # 30 chars -> 21 ten-grams; only "0123456789" (start and end) repeats, twice.
    # 20 distinct, k = min(floor(sqrt(20)) = 4, 1 repeated) = 1 -> 2/21 = 0.0952 > 0.0937
    above = "0123456789" + "abcdefghij" + "0123456789"
    assert f.stat(above) == pytest.approx(2 / 21)
    assert not f(above)
    # one more char in the middle: 31 chars -> 22 grams -> 2/22 = 0.0909 <= 0.0937
    below = "0123456789" + "abcdefghijk" + "0123456789"
    assert f.stat(below) == pytest.approx(2 / 22)
    assert f(below)
    assert CharRepetitionFilter(rep_len=10, max=2 / 21)(above)  # at the threshold: kept


def test_word_repetition_lowercases_and_strips():
    f = WordRepetitionFilter(rep_len=2)
    # DJ words: "The","cat,","the","CAT","sat." -> lowercased, punctuation stripped:
    # the cat the cat sat -> 2-grams: (the cat) (cat the) (the cat) (cat sat) = 4; "the cat" x2 -> 2/4
    text = "The cat, the CAT sat."
    assert f.stat(text) == 0.5
    assert WordRepetitionFilter(rep_len=2, max=0.5)(text)       # at: kept
    assert not WordRepetitionFilter(rep_len=2, max=0.49)(text)  # just below: dropped
    assert WordRepetitionFilter(rep_len=2, max=0.51)(text)      # just above: kept


def test_word_repetition_at_the_paper_threshold():
    f = WordRepetitionFilter(rep_len=10, max=0.0309)
    # letters only: digits are special characters, so "w0" would be the word "w"
    ten = " ".join(f"w{c}" for c in "abcdefghij")  # wa..wj is a 10-gram we use twice

    def caption(fillers):
        other = [f"x{a}{b}" for a in "abc" for b in "abcdefghijklmnopqrstuvwxyz"]  # 78 distinct words
        return f"{ten} " + " ".join(other[:fillers]) + f" {ten}"

    # 20 + m words -> 11 + m ten-grams; only wa..wj repeats (twice) -> 2 / (11 + m)
    assert f.stat(caption(54)) == pytest.approx(2 / 65)   # 0.03077 <= 0.0309: kept
    assert f(caption(54))
    assert f.stat(caption(53)) == pytest.approx(2 / 64)   # 0.03125 > 0.0309: dropped
    assert not f(caption(53))
    assert f.stat(" ".join(f"w{c}" for c in "abcdefghi")) == 0.0  # fewer than 10 words: no grams


def test_flagged_words_ratio():
    listed = flagged_words_en()
    assert len(listed) >= 400  # LDNOOBW English has 403 entries
    bad = sorted(w for w in listed if w.isalpha())[0]  # a word from the package, not typed here
    clean = "a dog sits on a red mat in the sun"           # 10 words, none flagged -> 0/10 = 0
    dirty = f"a dog sits on a red mat in the {bad.upper()}!"  # 1 flagged of 10 (case, "!" ignored)
    assert FlaggedWordsFilter().stat(clean) == 0.0
    assert FlaggedWordsFilter().stat(dirty) == 1 / 10
    assert FlaggedWordsFilter(max=0.0)(clean)                # paper: max 0.0 keeps only 0
    assert not FlaggedWordsFilter(max=0.0)(dirty)
    assert FlaggedWordsFilter(max=0.1)(dirty)                # at: kept
    assert not FlaggedWordsFilter(max=0.09)(dirty)           # just below: dropped


def test_word_count_strips_special_characters():
    text = "A cat, 2 dogs \u2014 and 3 birds!"
    # split on spaces: A | cat, | 2 | dogs | — | and | 3 | birds!
    # "2", "3" and "—" are all special characters -> empty after stripping -> 5 words
    assert dj_words(text, False) == ("A", "cat", "dogs", "and", "birds")
    assert WordCountFilter().stat(text) == 5
    assert WordCountFilter(min=5, max=5)(text)
    assert not WordCountFilter(min=6)(text)
    assert not WordCountFilter(max=4)(text)


def test_words_split_only_on_space_newline_tab():
    # DJ splits on " ", "\n", "\t" only; "\r" is whitespace (special) so it is stripped at the ends
    assert dj_words("a\nb\tc  d", True) == ("a", "b", "c", "d")
    assert dj_words("x\u00a0y", True) == ("x\u00a0y",)  # no-break space does not split


def test_dedupe_exact_and_normalized():
    assert normalize_caption("A cat on a mat.") == normalize_caption("a  cat on a mat") == "a cat on a mat"
    exact = DedupFilter("exact")
    assert not exact.is_duplicate("A cat on a mat.")
    assert not exact.is_duplicate("a  cat on a mat")   # differs as text
    assert exact.is_duplicate("A cat on a mat.")
    normalized = DedupFilter("normalized")
    assert not normalized.is_duplicate("A cat on a mat.")
    assert normalized.is_duplicate("a  cat on a mat")
    assert normalized.is_duplicate("A CAT, on a mat!")
    assert not normalized.is_duplicate("A cat on a hat.")
    assert all(len(k) == 16 for k in normalized.seen)   # digests, not texts
    assert normalize_caption("«Ein Hund» – im Park…") == "ein hund im park"  # Unicode punctuation too
