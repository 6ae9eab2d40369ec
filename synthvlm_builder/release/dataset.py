"""The dataset consumers load: the selected candidates as Parquet data files in the Hub layout
(`data/train-XXXXX-of-YYYYY.parquet` + card), written with the `datasets` library's own Parquet
writer (its Features, image encoding, schema metadata and page options), one file at a time.

A file is final the moment it is closed, so a caller can act on it (upload it: release/stream.py)
while the next one is written. Files are cut by bytes, greedily, in plan order: the same rows always
give the same files, byte for byte, which is what lets a resumed build recognise what it uploaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.arrow_writer import ParquetWriter

from ..atomic import atomic_path
from ..recipe import Recipe
from ..stages.rows import dataset_row, features
from ..layout import DATA, data_file, data_part
from ..settings import setting

CITATION = """@inproceedings{liu2025synthvlm,
  title={SynthVLM: Towards High-Quality and Efficient Synthesis of Image-Caption Datasets for Vision-Language Models},
  author={Liu, Zheng and Liang, Hao and Li, Bozhou and Xiong, Wentao and Chen, Chong and He, Conghui and Zhang, Wentao and Cui, Bin},
  booktitle={Proceedings of the 33rd ACM International Conference on Multimedia},
  year={2025},
  note={arXiv:2407.20756}
}"""

# Bytes of rows per data file, as push_to_hub's 500MB: small enough for the Hub, large enough to stay
# few. SYNTHVLM_MAX_DATA_FILE_BYTES overrides it (the tests force many small files with it).
MAX_FILE_BYTES = 500 * 1000 * 1000
# The Hub's dataset viewer refuses row groups over ~300 MB; `datasets` caps image row groups at 100
# rows only, which 4096-px PNGs turn into ~1 GB. Row groups are bounded by bytes as well.
MAX_ROW_GROUP_ROWS = 100
MAX_ROW_GROUP_BYTES = 128 * 1000 * 1000
ROW_BYTES_BESIDE_IMAGE = 4096  # caption, conversations, scores: a generous bound per row


def row_group_rows(max_image_bytes: int, max_bytes: int = MAX_ROW_GROUP_BYTES) -> int:
    """Rows per Parquet row group so that a group of the largest images stays under `max_bytes`."""
    return max(1, min(MAX_ROW_GROUP_ROWS, max_bytes // (max(0, max_image_bytes) + ROW_BYTES_BESIDE_IMAGE)))


def selected_rows(shard_files: list[Path], selected: set[str], recipe: Recipe) -> Iterator[dict]:
    """Stream the selected candidates out of the shard files, images included, in plan order.
    Rows are filtered in Arrow, so unselected images are never turned into Python objects."""
    wanted = pa.array(sorted(selected), pa.string())
    for path in shard_files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            for row in batch.filter(pc.is_in(batch.column("id"), value_set=wanted)).to_pylist():
                yield dataset_row(row, recipe)


def max_file_bytes() -> int:
    return setting("SYNTHVLM_MAX_DATA_FILE_BYTES", MAX_FILE_BYTES)


def dataset_info(recipe: Recipe, rows: int, num_bytes: int, download_size: int) -> datasets.DatasetInfo:
    """What the card's dataset_info says: the features and the split as written."""
    info = datasets.DatasetInfo(description=recipe.description, features=features(recipe), license=recipe.license,
                                citation=CITATION, dataset_name=recipe.name, config_name="default")
    info.splits = datasets.SplitDict(dataset_name=recipe.name)
    info.splits.add(datasets.SplitInfo(name="train", num_bytes=num_bytes, num_examples=rows,
                                       dataset_name=recipe.name))
    info.download_size, info.dataset_size = download_size, num_bytes  # what a consumer downloads
    return info


def write_parquet(staging: Path, rows: Iterator[dict], recipe: Recipe, max_image_bytes: int,
                  max_row_group_bytes: int = MAX_ROW_GROUP_BYTES, file_bytes: int | None = None,
                  on_file: Callable[[int, Path], None] | None = None) -> tuple[list[str], datasets.DatasetInfo]:
    """Write `rows` (dataset rows, plan order) into `staging/data/`; return the Hub-layout names and the
    info. A new file starts when the next row would take the current one past `file_bytes` (an image
    plus ROW_BYTES_BESIDE_IMAGE per row); each closed file is passed to `on_file(index, path)` at once."""
    limit = file_bytes or max_file_bytes()
    folder = staging / DATA
    folder.mkdir(parents=True, exist_ok=True)
    group = row_group_rows(max_image_bytes, max_row_group_bytes)
    parts: list[Path] = []
    totals = {"rows": 0, "bytes": 0}

    def write_file(first: dict, rest: Iterator[dict]) -> dict | None:
        """Write one file starting with `first`; return the row that did not fit, or None at the end."""
        path = folder / data_part(len(parts))
        size, leftover = 0, None
        with atomic_path(path) as tmp:
            writer = ParquetWriter(features=features(recipe), path=str(tmp), writer_batch_size=group,
                                   embed_local_files=True)
            try:
                row = first
                while row is not None:
                    writer.write(row)
                    size += len(row["image"]["bytes"]) + ROW_BYTES_BESIDE_IMAGE
                    row = next(rest, None)
                    if row is not None and size + len(row["image"]["bytes"]) + ROW_BYTES_BESIDE_IMAGE > limit:
                        leftover = row
                        break
                n, num_bytes = writer.finalize()
            finally:
                writer.close()
        totals["rows"] += n
        totals["bytes"] += num_bytes
        parts.append(path)
        if on_file:
            on_file(len(parts) - 1, path)
        return leftover

    rows = iter(rows)
    row = next(rows, None)
    while row is not None:
        row = write_file(row, rows)
    names = []
    for i, part in enumerate(parts):
        names.append(data_file(i, len(parts)))
        os.replace(part, staging / names[-1])
    download = sum((staging / n).stat().st_size for n in names)
    return names, dataset_info(recipe, totals["rows"], totals["bytes"], download)
