"""Tiny real inputs for the caption stage's model steps, made in a second, offline.

- a SentencePiece word model trained here, and a bigram ARPA language model written by hand over its
  pieces, whose perplexities can be worked out on paper (PERPLEXITIES);
- a LLaVA-style source: a JSON list of records whose `image` names a PNG in an image folder, with one
  missing file and one that is not an image;
- the shipped every-step recipe's data (recipes/data/curation/) is made by `python tests/curationkit.py`.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "recipes" / "data" / "curation"

SP_CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the mat is red", "a red log"]

# log10 probabilities; the pieces are SentencePiece's ("\u2581" marks a word start).
ARPA = """\\data\\
ngram 1=6
ngram 2=2

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.5
-0.6\t</s>\t0
-0.7\t\u2581the\t-0.3
-0.8\t\u2581cat\t-0.2
-0.9\t\u2581sat\t0

\\2-grams:
-0.2\t<s> \u2581the
-0.1\t\u2581the \u2581cat

\\end\\
"""

# Worked by hand from ARPA (kenlm scores with <s> and </s>; a missing bigram backs off):
#   "the cat sat": p(the|<s>) -0.2, p(cat|the) -0.1, p(sat|cat) = bo(cat) -0.2 + p(sat) -0.9 = -1.1,
#                  p(</s>|sat) = bo(sat) 0 + p(</s>) -0.6        -> -2.0 over 3 pieces + 1: 10^(2.0/4) = 3.16
#   "sat the dog": p(sat|<s>) = bo(<s>) -0.5 + -0.9 = -1.4, p(the|sat) = 0 + -0.7,
#                  p(dog|the) = bo(the) -0.3 + p(<unk>) -1.0 = -1.3, p(</s>|<unk>) = -0.6  -> -4.0 / 4: 10^1 = 10
#   "the":         p(the|<s>) -0.2, p(</s>|the) = bo(the) -0.3 + -0.6 = -0.9  -> -1.1 / 2: 10^0.55 = 3.548
#   "cat cat cat": p(cat|<s>) = -0.5 - 0.8 = -1.3, p(cat|cat) = -0.2 - 0.8 = -1.0 (twice),
#                  p(</s>|cat) = -0.2 - 0.6 = -0.8                -> -4.1 / 4: 10^1.025 = 10.59
PERPLEXITIES = {"the cat sat": 3.2, "sat the dog": 10.0, "the": 3.5, "cat cat cat": 10.6}


def sentencepiece_model() -> bytes:
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SP_CORPUS * 5), model_writer=out, model_type="word", vocab_size=15,
        hard_vocab_limit=False, normalization_rule_name="identity", minloglevel=2, num_threads=1)
    return out.getvalue()


def write_perplexity_models(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.sp.model").write_bytes(sentencepiece_model())
    (folder / "tiny.arpa").write_text(ARPA, encoding="utf-8")
    return folder / "tiny.arpa", folder / "tiny.sp.model"


def png(seed: int, size=(40, 48)) -> bytes:
    """A small noise picture, different for each seed (sizes differ too: web images do)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1] + seed % 3 * 8, size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


MISSING, BROKEN = "r07", "r08"  # the image of r07 does not exist, r08's is not an image

# (id, caption); each record's image is <id>.png
LLAVA_ROWS = [
    ("r00", "the cat sat"),
    ("r01", "A red bicycle leaning against a brick wall near the street."),
    ("r02", "Two dogs running across a green meadow in the morning."),
    ("r03", "sat the dog"),
    ("r04", "A bowl of ramen with a soft boiled egg on the table."),
    ("r05", "A lighthouse on a rocky coast."),
    ("r06", "A wooden boat tied to a dock on a calm lake at dusk."),
    ("r07", "A child flying a yellow kite on a windy beach."),
    ("r08", "A cat sleeping on a sunny windowsill."),
    ("r09", "A blue car parked in front of a pink house."),
    ("r10", "A snowy pine forest with a narrow trail."),
    ("r11", "A hot air balloon over rolling green hills."),
    ("r12", "A red bicycle leaning against a brick wall near the street."),  # a repeat: dedupe drops it
    ("r13", "两只小狗在绿色的草地上奔跑"),  # two puppies running on green grass: one "word" unless segmented
    ("r14", "$$$ ### !!! @@@ %%% ^^^ &&& ***"),
]


def write_llava_source(folder: Path) -> tuple[Path, Path]:
    """folder/captions.json (LLaVA records) and folder/images/ (their PNGs)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (rid, text) in enumerate(LLAVA_ROWS):
        name = f"{rid}.png"
        if rid == BROKEN:
            (images / name).write_bytes(b"not a picture")
        elif rid != MISSING:
            (images / name).write_bytes(png(i))
        records.append({"id": rid, "image": name, "conversations": [
            {"from": "human", "value": "Describe the image briefly.\n<image>"}, {"from": "gpt", "value": text}]})
    (folder / "captions.json").write_text(json.dumps(records, indent=1) + "\n")
    return folder / "captions.json", images


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED
    write_perplexity_models(target)
    write_llava_source(target)
    print(f"wrote {target}")
