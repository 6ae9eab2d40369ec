"""A word-level CLIP BPE tokenizer for the shapes world (one token per world word).

The stock CLIP vocab has 49,408 tokens (a 3.2M-parameter embedding at width 64); the world has
~30 words. We keep CLIP's tokenizer *format* (byte-level BPE, `</w>` word ends, the same
special tokens) so transformers' CLIPTokenizer, diffusers and open_clip's HFTokenizer load it, but
learn the merges on the world's words only: every world word becomes a single token, anything
else falls back to characters.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"  # EOS doubles as pad and unk, as in CLIP
# Characters every text can fall back to (others become unk).
_ALPHABET = list("abcdefghijklmnopqrstuvwxyz0123456789,.!?'-")


def learn_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges such that each word in `words` encodes to one token.

    Plain BPE training run to completion: repeatedly merge the most frequent adjacent pair
    (ties broken lexicographically, so the result is deterministic). Encoding applies merges in
    the same order, so it reproduces the training segmentation: one token per word.
    """
    seqs = {w: [*w[:-1], w[-1] + "</w>"] for w in sorted(set(words))}
    vocab = [BOS, EOS] + _ALPHABET + [c + "</w>" for c in _ALPHABET]
    merges = []
    while True:
        pairs = Counter(p for s in seqs.values() for p in zip(s, s[1:]))
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        if joined not in vocab:
            vocab.append(joined)
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return {t: i for i, t in enumerate(vocab)}, merges


def build_tokenizer(words: list[str], max_length: int):
    from transformers import CLIPTokenizer

    vocab, merges = learn_bpe(words)
    tok = CLIPTokenizer(vocab=vocab, merges=merges)
    tok.model_max_length = max_length
    return tok


def world_tokenizer():
    """The shapes models' tokenizer: every word of the world one token, TEXT_LEN tokens at most."""
    from . import nets, world

    return build_tokenizer([w for w in world.VOCAB if w.isalpha()], nets.TEXT_LEN)


def save_tokenizer(tok, folder: str | Path) -> None:
    """save_pretrained plus vocab.json / merges.txt (transformers 5 writes only tokenizer.json).

    The slow-format files let loaders that read vocab/merges (older transformers, open_clip's
    SimpleTokenizer-style code, other tools) open the same tokenizer.
    """
    folder = Path(folder)
    tok.save_pretrained(folder)
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False) + "\n")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
