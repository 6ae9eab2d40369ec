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

from dataclasses import dataclass

from ...errors import BuildError
from ...models.files import ModelFile
from ...models.preflight import ModelUnavailable
from ...models.uses import ModelUse
from ..cache import StepCache, cache_key
from ..step import CaptionStep, in_range, require

FIELD = "captions.filters.perplexity"


@dataclass(frozen=True)
class PerplexityConfig:
    model: str                   # KenLM model (ARPA or binary): absolute local path or hf://org/name[@rev]/file
    tokenizer: str               # SentencePiece model, same forms
    max: float


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


class PerplexityStep(CaptionStep):
    name = "perplexity"
    summary = "KenLM perplexity"
    order = 100
    legacy = "later"
    Config = PerplexityConfig
    schema = {'description': "Perplexity under a KenLM language model, as Data-Juicer's perplexity_filter: the "
                             'caption is split into SentencePiece pieces, scored by KenLM (with sentence begin and '
                             'end), and perplexity = 10^(-log10 score / (pieces + 1)), rounded to 0.1. Keep '
                             'perplexity <= max. Needs `pip install -e ".[perplexity]"`.',
              'type': 'object',
              'additionalProperties': False,
              'required': ['model', 'tokenizer', 'max'],
              'properties': {'model': {'description': 'The KenLM model (ARPA text or KenLM binary): a local file '
                                                      '(relative to the recipe file) or a Hub file '
                                                      'hf://<org>/<name>[@<revision>]/<path>, e.g. '
                                                      "hf://edugp/kenlm/wikipedia/en.arpa.bin (Data-Juicer's "
                                                      'English Wikipedia model).',
                                       'type': 'string',
                                       'minLength': 1},
                             'tokenizer': {'description': 'The SentencePiece model the language model was trained '
                                                          'on, in the same forms, e.g. '
                                                          'hf://edugp/kenlm/wikipedia/en.sp.model.',
                                           'type': 'string',
                                           'minLength': 1},
                             'max': {'description': 'Largest perplexity kept (inclusive); the paper used 5500.',
                                     'type': 'number',
                                     'minimum': 0}}}
    rows = scored = ("perplexity",)
    batch_size = 64

    @classmethod
    def funnel(cls, cfg: PerplexityConfig, filters) -> list[tuple[str, str]]:
        return [(cls.name, f"<= {cfg.max:g} (KenLM {cfg.model})")]

    @classmethod
    def models(cls, value: dict, at: tuple) -> list[ModelUse]:
        return [ModelUse(value, at, "file", key, digest=f"{FIELD}.{key}", what=f"the perplexity {what}")
                for key, what in (("model", "model"), ("tokenizer", "tokenizer"))]

    @classmethod
    def check(cls, c, value, at, data) -> None:
        from ...recipe.checks import check_model_file
        for key in ("model", "tokenizer"):
            check_model_file(c, value[key], at + (key,))

    @classmethod
    def preflight(cls, cfg: PerplexityConfig, filters) -> None:
        check_available(cfg)

    @classmethod
    def from_config(cls, cfg: PerplexityConfig, env) -> "PerplexityStep":
        return cls(cfg, env.cache_dir)

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
