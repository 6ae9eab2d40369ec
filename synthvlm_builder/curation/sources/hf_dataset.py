"""hf_dataset: a dataset `datasets.load_dataset` reads (a Hub id or a local dataset folder), streamed;
the caption is `column`, the row id `id_column` (default: the row index), and with `image_column`
each caption's original image is that column's encoded bytes (never decoded here)."""
from __future__ import annotations

import os
from typing import Iterator

from ...errors import InputError
from ...recipe.config import MISSING_IMAGE, SourceConfig
from ..reading import CaptionSource, Row, caption_text, missing_column, source_field


def _hf_image(value):
    """An undecoded datasets Image value ({"bytes", "path"}) as bytes, a file path, or MISSING_IMAGE."""
    if isinstance(value, dict):
        return value.get("bytes") or value.get("path") or MISSING_IMAGE
    return MISSING_IMAGE



class HfDatasetSource(CaptionSource):
    name = "hf_dataset"
    summary = "datasets.load_dataset, streaming"
    order = 20
    file = False
    unit = "row"
    options = ("column", "id_column", "config", "split", "image_column")
    images = "image_column"

    @classmethod
    def rows(cls, src: SourceConfig, index: int, f: None) -> Iterator[Row]:
        import datasets

        try:
            # cache_dir read now rather than at `datasets` import, so a caller's env change takes effect
            ds = datasets.load_dataset(src.path, name=src.config, split=src.split, revision=src.revision,
                                       streaming=True, cache_dir=os.environ.get("HF_DATASETS_CACHE"))
        except FileNotFoundError as e:  # includes datasets' DatasetNotFoundError
            raise InputError(source_field(index, "path"), f"dataset {src.path!r} not found: {e}") from None
        except ConnectionError as e:
            raise InputError(source_field(index, "path"), f"cannot reach the Hub for {src.path!r}: {e}") from None
        except ValueError as e:  # datasets words these: "Bad split: ..." / "BuilderConfig 'x' not found ..."
            key = "split" if "split" in str(e).lower() else "config" if "config" in str(e).lower() else "path"
            raise InputError(source_field(index, key), str(e)) from None
        names = list(dict.fromkeys(filter(None, (src.column, src.id_column, src.image_column))))
        if ds.column_names is not None:
            for name in names:
                if name not in ds.column_names:
                    raise missing_column(src, index, name, ds.column_names, src.path)
            ds = ds.select_columns(names)  # never decode other columns (images, embeddings)
        if src.image_column:  # the encoded bytes: hashed for the cache, decoded only to be scored
            ds = ds.cast_column(src.image_column, datasets.Image(decode=False))
        for i, rec in enumerate(ds):
            for name in names:
                if name not in rec:
                    raise missing_column(src, index, name, rec, f"{src.path}: row {i}")
            where = f"{src.path}: row {i}"
            yield ((rec[src.id_column] if src.id_column else i), caption_text(rec[src.column], src, index, where), i,
                   _hf_image(rec[src.image_column]) if src.image_column else None)
