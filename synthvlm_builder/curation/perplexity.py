"""Perplexity under a KenLM language model, exactly as Data-Juicer's perplexity_filter operator computes
it (following BigScience's text-data-filtering):

    pieces = sentencepiece.encode_as_pieces(text)
    for each line of " ".join(pieces):  log10 score += kenlm.score(line)   (with <s> and </s>)
                                         length      += number of pieces in it + 1   (the </s>)
    perplexity = round(10 ** (-log10 score / length), 1)

The paper keeps captions with perplexity <= 5500 under Data-Juicer's English Wikipedia models
(hf://edugp/kenlm/wikipedia/en.arpa.bin and en.sp.model).
"""
from __future__ import annotations

from ..errors import BuildError
from ..models.files import ModelFile
from ..models.preflight import ModelUnavailable
from ..recipe.config import PerplexityConfig
from .cache import StepCache, cache_key
from .steps import BatchStep, in_range, require

FIELD = "captions.filters.perplexity"


class PerplexityModel:
    """A SentencePiece tokenizer and the KenLM model trained on its pieces."""

    def __init__(self, model_path, tokenizer_path):
        import kenlm
        import sentencepiece

        config = kenlm.Config()
        config.show_progress = False  # no progress bar, and no advice to binarize an ARPA file, on stderr
        config.arpa_complain = kenlm.ARPALoadComplain.NONE
        try:
            self.tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer_path))
        except (OSError, RuntimeError) as e:
            raise BuildError(f"{FIELD}.tokenizer: {tokenizer_path} is not a SentencePiece model: {e}") from None
        try:
            self.lm = kenlm.Model(str(model_path), config)
        except (OSError, RuntimeError) as e:
            raise BuildError(f"{FIELD}.model: {model_path} is not a KenLM model (ARPA or binary): {e}") from None

    def perplexity(self, text: str) -> float:
        pieces = " ".join(self.tokenizer.encode_as_pieces(text))
        log10_score, length = 0.0, 0
        for line in pieces.splitlines():
            log10_score += self.lm.score(line)  # bos=True, eos=True: kenlm's defaults, as DJ calls it
            length += len(line.split()) + 1
        return round(10.0 ** (-log10_score / length), 1) if length else 0.0


def model_files(cfg: PerplexityConfig) -> tuple[ModelFile, ModelFile]:
    try:
        return ModelFile.parse(cfg.model), ModelFile.parse(cfg.tokenizer)
    except ModelUnavailable as e:
        raise BuildError(f"{FIELD}: {e}") from None


def check_available(cfg: PerplexityConfig) -> None:
    """Preflight: the packages are installed and both files can be had (here, cached or on the Hub)."""
    require(("kenlm", "sentencepiece"), "perplexity", FIELD)
    for f in model_files(cfg):
        try:
            f.check()
        except ModelUnavailable as e:
            raise BuildError(f"{FIELD}: {e}") from None


class PerplexityStep(BatchStep):
    rows = scored = ("perplexity",)
    batch_size = 64

    def __init__(self, cfg: PerplexityConfig, cache_dir=None):
        super().__init__()
        check_available(cfg)
        self.cfg, self.files = cfg, model_files(cfg)
        try:
            self.identity = "\0".join(f.digest() for f in self.files)  # content, not the path
        except ModelUnavailable as e:
            raise BuildError(f"{FIELD}: {e}") from None
        self.cache = StepCache("perplexity", cache_dir)
        self._model = None  # loaded on the first cache miss: a cached rerun never loads it

    def judge(self, batch):
        keys = [cache_key(self.identity, c.text) for c in batch]
        found = self.cache.get_many(keys)
        fresh = {}
        for key, caption in zip(keys, batch):
            if key not in found and key not in fresh:
                if self._model is None:
                    self._model = PerplexityModel(*(f.path() for f in self.files))
                fresh[key] = self._model.perplexity(caption.text)
        self.cache.put_many(fresh)
        self.tally("perplexity", len(fresh), len(batch) - len(fresh))
        values = {**found, **fresh}
        return [None if in_range(values[k], None, self.cfg.max) else ("perplexity", f"perplexity {values[k]}")
                for k in keys]

    def close(self):
        self.cache.close()
