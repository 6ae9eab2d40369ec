"""The row schema: every column a candidate or a dataset row has, defined once.

The candidate shards' Arrow schema, the published `datasets.Features`, the columns selection reads,
the score columns the card summarises and plots, and the card's field list all derive from `columns`:
the core's (HEAD, TAIL) and those of the scores and screens the recipe turns on (each component
declares its own: stages/parts.py).
"""
from __future__ import annotations

from .parts import Column


# In the published order (the dataset's column order); the components' columns go between HEAD and
# TAIL, in the registry's order (scores, then screens).
HEAD = (
    Column("id", "string", "`<caption id>-<k>`, unique per row", selection=True),
    Column("image", "image", "the generated image"),
    Column("caption", "string", "the curated caption the image was generated from"),
    Column("conversations", "conversations", "LLaVA-pretrain turns: human instruction + `<image>`, gpt caption",
           candidate=False),
)
TAIL = (
    Column("seed", "int64", "the seed that regenerates the image"),
    Column("source", "string", "the caption source's name"),
    Column("width", "int32", "image width in pixels"),
    Column("height", "int32", "image height in pixels"),
    Column("caption_id", "string", "`<source name>:<row id>`", published=False, selection=True),
    Column("k", "int32", "candidate index of the caption", published=False),
)


# Adaptive best-of-k only (execution/rounds.py): which captions a round's batch held, for `verify`.
ROUND_BATCH = Column("round_batch", "int32_list", "adaptive best-of-k: the shard positions of the captions generated"
                     " in this image's batch (`verify` rebuilds the batch from them)")


def columns(recipe) -> list[Column]:
    from ..recipe.components import enabled
    parts = [c for kind in ("score", "screen") for cls, cfg in enabled(recipe, kind) for c in cls.columns(cfg)]
    if recipe.generate.adaptive:
        parts.append(ROUND_BATCH)
    # columns only the work state keeps (near-duplicates' embeddings) stay last, as they always were
    return [*HEAD, *(c for c in parts if c.published), *TAIL, *(c for c in parts if not c.published)]


def _arrow(kind: str):
    import pyarrow as pa
    return {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
            "binary": pa.binary(), "image": pa.binary(), "int32_list": pa.list_(pa.int32())}[kind]


def candidate_schema(recipe):
    import pyarrow as pa
    return pa.schema([(c.name, _arrow(c.kind)) for c in columns(recipe) if c.candidate])


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
        "image": datasets.Image, "int32_list": lambda: datasets.List(datasets.Value("int32")),
        "conversations": lambda: datasets.List({"from": datasets.Value("string"),
                                                "value": datasets.Value("string")}),
    }
    return datasets.Features({c.name: kinds[c.kind]() for c in columns(recipe) if c.published})


def field_list(recipe) -> str:
    """The card's one-line list of a row's fields."""
    return ", ".join(f"{c.name} (PIL)" if c.kind == "image" else c.name for c in columns(recipe) if c.published)


def dataset_row(candidate: dict, recipe) -> dict:
    """A candidate row (from a shard) as the dataset row consumers load."""
    from .format import conversations, image_filename
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
