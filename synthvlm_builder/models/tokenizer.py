"""Caption tokenizers: counting and truncating captions in the tokens the generation model's
(first) text encoder sees, loaded without any model weights."""
from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

from . import builtin
from .preflight import ModelUnavailable, builtin_name, check_pipeline_available
from .ref import BUILTIN, LOCAL, ModelRef

_LAST_SPACE = re.compile(r".*\s", re.DOTALL)  # matched in a window: ends just after its last whitespace


class CaptionTokenizer:
    """Counts and truncates captions in the tokens the pipeline's (first) text encoder sees."""

    def __init__(self, hf_tokenizer):
        self._hf = hf_tokenizer
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is not None:
            # A private copy of the Rust tokenizer without padding/truncation, called directly:
            # count() runs on every caption, and this skips the transformers wrapper (~30% faster).
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
        self._backend = backend
        self._n_special = self.count("")

    def count(self, text: str) -> int:
        """Tokens including the begin/end specials (so CLIP's limit is 77)."""
        if self._backend is not None:
            return len(self._backend.encode(text).ids)
        return len(self._hf(text)["input_ids"])

    def counts(self, texts: list[str]) -> list[int]:
        """`count` for many texts in one call (threaded in Rust unless TOKENIZERS_PARALLELISM=false,
        which importing open_clip sets)."""
        if self._backend is not None:
            return [len(e.ids) for e in self._backend.encode_batch(texts)]
        return [self.count(t) for t in texts]

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text`, cut between tokens, whose count() is <= max_tokens."""
        keep = max_tokens - self._n_special
        if keep < 0:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for the {self._n_special} special tokens")
        if self.count(text) <= max_tokens:
            return text
        if self._backend is None:
            ids = self._hf(text, add_special_tokens=False)["input_ids"]
            cut = lambda k: self._hf.decode(ids[:k], skip_special_tokens=True)  # noqa: E731
        else:
            # Cut the original string at a token's end offset: keeps the caption's own casing and
            # spacing, which decoding (lower-cased, " ." for ".") would not.
            offsets = self._backend.encode(text, add_special_tokens=False).offsets
            cut = lambda k: text[: offsets[k - 1][1]].rstrip() if k else ""  # noqa: E731
        out = cut(keep)
        # Re-tokenising a prefix can split its last word differently; step back until it fits.
        while keep > 0 and self.count(out) > max_tokens:
            keep -= 1
            out = cut(keep)
        return out

    # --- bounded counting: a 30 MB caption must not be tokenized whole (GBs of offsets and ids) ----------
    @cached_property
    def _longest_token(self) -> int:
        """The most characters one vocabulary entry holds (CLIP's: 32 bytes of its byte alphabet)."""
        vocab = (self._backend or self._hf).get_vocab()
        return max(map(len, vocab), default=1)

    def _head(self, text: str, limit: int) -> tuple[int, int]:
        """(end, tokens) for the shortest prefix text[:end] cut between whitespace-separated pieces whose
        token count is above `limit`, or (len(text), count(text)) when the whole text is within it.

        A text of up to P characters (P = 64 Ki, or 6 * _longest_token * (limit + 1) if larger) is
        tokenized whole. A longer one is tokenized in pieces of at most P characters, each cut just
        before a whitespace character in its second half, and the counts are summed (specials once)
        until they pass `limit`. Tokens never span whitespace (the pre-tokenizers split there; CLIP's
        drops it), so the sum is the whole text's count. A piece with no whitespace in its second half
        is cut mid-word, but then that half alone, over P / 2 characters with no whitespace, holds
        more than `limit` tokens (a token covers at most _longest_token characters, three times that
        before NFC composition), as the whole text does: the decision is still exact. Memory stays
        bounded by P, whatever the text's length (tests/test_edges_inputs.py decides long captions)."""
        piece = max(1 << 16, 6 * self._longest_token * (limit + 1))
        if len(text) <= piece:
            return len(text), self.count(text)
        total, pos = self._n_special, 0
        while pos < len(text) and total <= limit:
            end = min(pos + piece, len(text))
            if end < len(text):
                last_space = _LAST_SPACE.match(text, pos + piece // 2, end)
                if last_space:
                    end = last_space.end() - 1
            total += self.count(text[pos:end]) - self._n_special
            pos = end
        return pos, total

    def count_within(self, text: str, limit: int) -> int:
        """count(text) when it is at most `limit`; otherwise some number above `limit`, found without
        tokenizing far past it (see _head): what a max_tokens filter needs, in bounded memory."""
        return self._head(text, limit)[1]

    def truncate_long(self, text: str, max_tokens: int) -> str:
        """truncate(text, max_tokens) for a text of any length: only its head is tokenized."""
        return self.truncate(text[: self._head(text, max_tokens)[0]], max_tokens)


def clip_caption_tokenizer(model: str) -> CaptionTokenizer:
    """The tokenizer of an open_clip model's text tower (score.clip.model), as a transformers tokenizer: a
    folder's own (a shipped builtin, local-dir:), open_clip's Hub tokenizer (hf-hub:), else the CLIP BPE
    that open_clip ships for its architectures, built in memory (builtin.clip_tokenizer: no download)."""
    ref = ModelRef.parse(model, clip=True)
    folder = builtin.builtin_dir(ref.name) if ref.kind == BUILTIN and ref.name in builtin.SHIPPED else \
        ref.path() if ref.kind == LOCAL else None
    try:
        if folder is not None and (folder / "tokenizer.json").is_file():
            from transformers import AutoTokenizer
            return CaptionTokenizer(AutoTokenizer.from_pretrained(folder))
        if ref.kind == BUILTIN:  # a random-weight builtin reads the CLIP BPE
            builtin_name(ref, builtin.CLIP_MODELS, "CLIP")
            return CaptionTokenizer(builtin.clip_tokenizer())
        import open_clip

        from .loading import open_clip_name
        tokenizer = open_clip.get_tokenizer(open_clip_name(model, None)[0])
        if isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):  # the BPE open_clip ships
            return CaptionTokenizer(builtin.clip_tokenizer())
        hf = getattr(tokenizer, "tokenizer", None)  # HFTokenizer: a transformers tokenizer
        if hf is None:
            raise ModelUnavailable(f"the tokenizer of CLIP {model!r} is not a transformers or CLIP BPE tokenizer")
        return CaptionTokenizer(hf)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelUnavailable(f"cannot load the tokenizer of CLIP {model!r}: {e}") from e


def caption_tokenizer(model: str, revision: str | None = None) -> CaptionTokenizer:
    """The tokenizer of `model`'s first text encoder, loaded without any weights."""
    ref = ModelRef.parse(model)
    if ref.kind == BUILTIN and ref.name not in builtin.SHIPPED:
        builtin_name(ref, builtin.PIPELINES, "pipeline")
        return CaptionTokenizer(builtin.clip_tokenizer())
    check_pipeline_available(model, revision)
    from huggingface_hub import snapshot_download
    from transformers import AutoTokenizer

    try:
        # Fetch (or find cached) only tokenizer/ and load it as a local folder: AutoTokenizer on a
        # Hub id first looks for a config.json, which SD's tokenizer/ lacks, and offline that
        # lookup fails unless an earlier online run happened to cache the miss.
        if ref.kind == BUILTIN:  # a shipped model: its own tokenizer (the shapes world's words)
            root = builtin.builtin_dir(ref.name)
        else:
            root = ref.path() if ref.kind == LOCAL else Path(snapshot_download(
                ref.name, revision=revision, allow_patterns=["tokenizer/*"]))
        return CaptionTokenizer(AutoTokenizer.from_pretrained(root / "tokenizer"))
    except OSError as e:
        raise ModelUnavailable(f"cannot load the tokenizer of {model!r}: {e}") from e
