"""max_tokens: captions longer than the text encoders read are dropped, or cut (`truncate`), counted in
the tokens of the generation model's first text encoder, or of the scoring CLIP's (`max_tokens_tokenizer:
clip`, for curating where the generator's files are not at hand; models/tokenizer.py); validate and the
preflight make sure it fits every encoder that reads the caption (models/context.py)."""
from __future__ import annotations

import dataclasses
from typing import Iterator

from ..step import CaptionStep


class TokenLimitFilter(CaptionStep):
    """max_tokens: tokenizer.count(text) (tokens incl. begin/end) must be <= max_tokens.

    The stat is exact up to max_tokens; above it, it is some larger count: a caption of any length is
    tokenized only as far as the decision needs (CaptionTokenizer.count_within), so memory stays
    bounded (a 30 MB caption tokenized whole took 4.3 GB)."""

    name = "max_tokens"
    summary = "token count under the generator's text encoder"
    order = 70
    legacy = "null"
    schema = {'description': "Largest token count (including begin/end tokens) under the generation model's first "
                             'text encoder tokenizer (CLIP BPE for builtins). Longer captions are dropped, or '
                             'truncated when truncate is true.',
              'type': 'integer',
              'minimum': 3,
              'maximum': 4096}
    siblings = {'truncate': {'description': 'With max_tokens: cut long captions to max_tokens instead of dropping '
                                            'them.',
                             'type': 'boolean',
                             'default': False},
                # added after recipes were published: counts in the fingerprint only when set to clip
                'max_tokens_tokenizer': {'description': "With max_tokens: whose tokenizer counts the tokens. generate "
                                                        "(the generation model's first text encoder; loading it needs "
                                                        "the model's tokenizer files at hand) or clip (score.clip's "
                                                        "open_clip tokenizer: the CLIP BPE of open_clip's "
                                                        "architectures ships with open_clip, so curation runs where "
                                                        "the generator's files are not). Counts agree where both are "
                                                        "CLIP BPE (SD 1.x/2.x, SDXL and open_clip's CLIPs); the "
                                                        "context checks are the same either way.",
                                         'enum': ['generate', 'clip'],
                                         'default': 'generate',
                                         'x-later': True}}

    def __init__(self, tokenizer, max_tokens: int, truncate: bool = False, funnel=None):
        super().__init__(max=max_tokens)
        self.tokenizer, self.truncating, self.tally = tokenizer, truncate, funnel

    @classmethod
    def from_config(cls, cfg: int, env) -> "TokenLimitFilter":
        if env.tokenizer is None:
            raise ValueError("captions.filters.max_tokens needs a tokenizer (models.caption_tokenizer)")
        truncate = bool(env.filters.truncate)
        if truncate and env.funnel is not None:
            env.funnel.truncated = 0
        return cls(env.tokenizer(), cfg, truncate, env.funnel)

    @classmethod
    def funnel(cls, cfg: int, filters) -> list[tuple[str, str]]:
        return [(cls.name, f"<= {cfg}" + (" (longer ones truncated)" if filters.truncate else ""))]

    @classmethod
    def check(cls, c, value, at, data) -> None:
        from ...recipe.checks import check_max_tokens
        c.later(lambda: check_max_tokens(c, data))  # after the models it reads are checked

    def stat(self, text: str) -> float:
        return self.tokenizer.count_within(text, self.max)

    def truncate(self, text: str) -> str:
        return self.tokenizer.truncate_long(text, self.max)

    def run(self, captions) -> Iterator:
        count = self.counts[self.name]
        for cap in captions:
            if not self.keep(self.stat(cap.text)):
                if not self.truncating:
                    count.drop(cap)
                    continue
                cap = dataclasses.replace(cap, text=self.truncate(cap.text))
                self.tally.truncated += 1
            yield cap
