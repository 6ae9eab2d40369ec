"""The row schema: every column a candidate or a dataset row has, defined once.

The candidate shards' Arrow schema, the published `datasets.Features`, the score columns that
selection reads and the card summarises, and the card's field list all derive from COLUMNS.
A new score is one Column here (score=True) plus the code that computes it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .format import conversations, image_filename


@dataclass(frozen=True)
class Column:
    name: str
    kind: str                # string | int32 | int64 | float32 | image | conversations
    doc: str
    candidate: bool = True   # stored in the candidate shards (DIR/.synthvlm/shards)
    published: bool = True   # a column of the dataset consumers load
    score: bool = False      # a score: read by selection, summarised and plotted in the card


# In the published order (the dataset's column order).
COLUMNS = (
    Column("id", "string", "`<caption id>-<k>`, unique per row"),
    Column("image", "image", "the generated image"),
    Column("caption", "string", "the curated caption the image was generated from"),
    Column("conversations", "conversations", "LLaVA-pretrain turns: human instruction + `<image>`, gpt caption",
           candidate=False),
    Column("clip_score", "float32", "cosine of the open_clip image and text embeddings, in score.clip.units (raw,"
           " or 2.5 * max(cosine, 0))", score=True),
    Column("ssim", "float32", "SSIM of the image with itself resized down and back up", score=True),
    Column("score", "float32", "the selection score: clip_score + ssim.weight * ssim", score=True),
    Column("seed", "int64", "the seed that regenerates the image"),
    Column("source", "string", "the caption source's name"),
    Column("width", "int32", "image width in pixels"),
    Column("height", "int32", "image height in pixels"),
    Column("caption_id", "string", "`<source name>:<row id>`", published=False),
    Column("k", "int32", "candidate index of the caption", published=False),
)

_ARROW = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
          "image": pa.binary()}

CANDIDATE_SCHEMA = pa.schema([(c.name, _ARROW[c.kind]) for c in COLUMNS if c.candidate])
PUBLISHED = tuple(c.name for c in COLUMNS if c.published)
SCORES = tuple(c.name for c in COLUMNS if c.score)
# What selection reads from the shards: a few bytes per candidate, never an image.
SELECTION_COLUMNS = ("id", "caption_id") + SCORES


def features():
    """The dataset's `datasets.Features` (datasets is imported only when this is called)."""
    import datasets

    kinds = {
        "string": lambda: datasets.Value("string"), "int32": lambda: datasets.Value("int32"),
        "int64": lambda: datasets.Value("int64"), "float32": lambda: datasets.Value("float32"),
        "image": datasets.Image,
        "conversations": lambda: datasets.List({"from": datasets.Value("string"),
                                                "value": datasets.Value("string")}),
    }
    return datasets.Features({c.name: kinds[c.kind]() for c in COLUMNS if c.published})


def field_list() -> str:
    """The card's one-line list of a row's fields."""
    return ", ".join(f"{c.name} (PIL)" if c.kind == "image" else c.name for c in COLUMNS if c.published)


def dataset_row(candidate: dict, fmt) -> dict:
    """A candidate row (from a shard) as the dataset row consumers load; `fmt` is the recipe's format."""
    row = {}
    for c in COLUMNS:
        if not c.published:
            continue
        if c.kind == "image":
            row[c.name] = {"bytes": candidate["image"], "path": image_filename(candidate["id"], fmt.image_format)}
        elif c.kind == "conversations":
            row[c.name] = conversations(candidate["caption"], candidate["seed"], fmt.prompts)
        else:
            row[c.name] = candidate[c.name]
    return row
