"""The row schema: every column a candidate or a dataset row has, defined once.

The candidate shards' Arrow schema, the published `datasets.Features`, the columns selection reads,
the score columns the card summarises and plots, and the card's field list all derive from COLUMNS.
Some columns exist only when the recipe asks for what fills them (`when`). A new score is one Column
here (score=True) plus the code that computes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pyarrow as pa

from .format import conversations, image_filename


@dataclass(frozen=True)
class Column:
    name: str
    kind: str                # string | int32 | int64 | float32 | binary | image | conversations
    doc: str
    candidate: bool = True   # stored in the candidate shards (DIR/.synthvlm/builds/KEY/shards)
    published: bool = True   # a column of the dataset consumers load
    score: bool = False      # a score: summarised and plotted in the card
    selection: bool = False  # read by selection (a few bytes per candidate, never an image)
    when: Optional[Callable] = None  # recipe -> bool: present only when the recipe configures it


def _near_dup(recipe, key: str) -> bool:
    near = recipe.screen.near_duplicates
    return near is not None and getattr(near, key) is not None


# In the published order (the dataset's column order).
COLUMNS = (
    Column("id", "string", "`<caption id>-<k>`, unique per row", selection=True),
    Column("image", "image", "the generated image"),
    Column("caption", "string", "the curated caption the image was generated from"),
    Column("conversations", "conversations", "LLaVA-pretrain turns: human instruction + `<image>`, gpt caption",
           candidate=False),
    Column("clip_score", "float32", "cosine of the open_clip image and text embeddings, in score.clip.units (raw,"
           " or 2.5 * max(cosine, 0))", score=True, selection=True),
    Column("ssim", "float32", "SSIM of the image with itself resized down and back up", score=True, selection=True),
    Column("score", "float32", "the selection score: clip_score + ssim.weight * ssim", score=True, selection=True),
    Column("aesthetic", "float32", "LAION aesthetic predictor score (1-10)", score=True, selection=True,
           when=lambda r: r.score.aesthetic is not None),
    Column("nsfw", "float32", "probability of the NSFW classifier's label", score=True, selection=True,
           when=lambda r: r.screen.nsfw is not None),
    Column("watermark", "float32", "probability of the watermark classifier's label", score=True, selection=True,
           when=lambda r: r.screen.watermark is not None),
    Column("phash", "string", "64-bit perceptual hash (imagehash pHash), 16 hex digits", selection=True,
           when=lambda r: _near_dup(r, "phash_distance")),
    Column("seed", "int64", "the seed that regenerates the image"),
    Column("source", "string", "the caption source's name"),
    Column("width", "int32", "image width in pixels"),
    Column("height", "int32", "image height in pixels"),
    Column("caption_id", "string", "`<source name>:<row id>`", published=False, selection=True),
    Column("k", "int32", "candidate index of the caption", published=False),
    Column("clip_embedding", "binary", "normalised CLIPScore image embedding, float16", published=False,
           selection=True, when=lambda r: _near_dup(r, "clip_cosine")),
)

_ARROW = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
          "binary": pa.binary(), "image": pa.binary()}


def columns(recipe) -> list[Column]:
    return [c for c in COLUMNS if c.when is None or c.when(recipe)]


def candidate_schema(recipe) -> pa.Schema:
    return pa.schema([(c.name, _ARROW[c.kind]) for c in columns(recipe) if c.candidate])


def scores(recipe) -> tuple[str, ...]:
    return tuple(c.name for c in columns(recipe) if c.score)


def selection_columns(recipe) -> tuple[str, ...]:
    return tuple(c.name for c in columns(recipe) if c.selection)


def features(recipe):
    """The dataset's `datasets.Features` (datasets is imported only when this is called)."""
    import datasets

    kinds = {
        "string": lambda: datasets.Value("string"), "int32": lambda: datasets.Value("int32"),
        "int64": lambda: datasets.Value("int64"), "float32": lambda: datasets.Value("float32"),
        "image": datasets.Image,
        "conversations": lambda: datasets.List({"from": datasets.Value("string"),
                                                "value": datasets.Value("string")}),
    }
    return datasets.Features({c.name: kinds[c.kind]() for c in columns(recipe) if c.published})


def field_list(recipe) -> str:
    """The card's one-line list of a row's fields."""
    return ", ".join(f"{c.name} (PIL)" if c.kind == "image" else c.name for c in columns(recipe) if c.published)


def dataset_row(candidate: dict, recipe) -> dict:
    """A candidate row (from a shard) as the dataset row consumers load."""
    fmt = recipe.format
    row = {}
    for c in columns(recipe):
        if not c.published:
            continue
        if c.kind == "image":
            row[c.name] = {"bytes": candidate["image"], "path": image_filename(candidate["id"], fmt.image_format)}
        elif c.kind == "conversations":
            row[c.name] = conversations(candidate["caption"], candidate["seed"], fmt.prompts)
        else:
            row[c.name] = candidate[c.name]
    return row
