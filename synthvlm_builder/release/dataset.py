"""The dataset consumers load: a `datasets` builder over the selected candidates,
written in the Hub layout (`data/train-XXXXX-of-YYYYY.parquet` + card).

The library does the work: Features, image encoding (our images are already
encoded, so their bytes pass through untouched), Parquet writing and sharding.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..recipe import Recipe
from ..stages.rows import dataset_row, features
from .layout import DATA, data_file

CITATION = """@inproceedings{liu2025synthvlm,
  title={SynthVLM: Towards High-Quality and Efficient Synthesis of Image-Caption Datasets for Vision-Language Models},
  author={Liu, Zheng and Liang, Hao and Li, Bozhou and Xiong, Wentao and Chen, Chong and He, Conghui and Zhang, Wentao and Cui, Bin},
  booktitle={Proceedings of the 33rd ACM International Conference on Multimedia},
  year={2025},
  note={arXiv:2407.20756}
}"""

MAX_SHARD_SIZE = "500MB"  # as push_to_hub: small enough for the Hub, large enough to stay few
# The Hub's dataset viewer refuses row groups over ~300 MB; `datasets` caps image row groups at 100
# rows only, which 4096-px PNGs turn into ~1 GB. Row groups are bounded by bytes as well.
MAX_ROW_GROUP_ROWS = 100
MAX_ROW_GROUP_BYTES = 128 * 1000 * 1000
ROW_BYTES_BESIDE_IMAGE = 4096  # caption, conversations, scores: a generous bound per row


def row_group_rows(max_image_bytes: int, max_bytes: int = MAX_ROW_GROUP_BYTES) -> int:
    """Rows per Parquet row group so that a group of the largest images stays under `max_bytes`."""
    return max(1, min(MAX_ROW_GROUP_ROWS, max_bytes // (max(0, max_image_bytes) + ROW_BYTES_BESIDE_IMAGE)))


class SynthVLMDataset(datasets.GeneratorBasedBuilder):
    """Rows come from a callable that yields the selected examples in plan order."""

    def __init__(self, *, rows: Callable[[], Iterator[dict]], recipe: Recipe, **kwargs):
        self._rows = rows
        self._recipe = recipe
        super().__init__(**kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self._recipe.description, features=features(self._recipe),
                                    license=self._recipe.license, citation=CITATION)

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN)]

    def _generate_examples(self):
        for row in self._rows():
            yield row["id"], row


def selected_rows(shard_files: list[Path], selected: set[str], recipe: Recipe) -> Iterator[dict]:
    """Stream the selected candidates out of the shard files, images included, in plan order.
    Rows are filtered in Arrow, so unselected images are never turned into Python objects."""
    wanted = pa.array(sorted(selected), pa.string())
    for path in shard_files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            for row in batch.filter(pc.is_in(batch.column("id"), value_set=wanted)).to_pylist():
                yield dataset_row(row, recipe)


def write_parquet(staging: Path, rows: Callable[[], Iterator[dict]], recipe: Recipe, fingerprint: str,
                  cache_dir: Path, max_image_bytes: int, max_row_group_bytes: int = MAX_ROW_GROUP_BYTES
                  ) -> tuple[list[str], datasets.DatasetInfo]:
    """Run the builder into `staging`; return the Hub-layout data file names and the info."""
    builder = SynthVLMDataset(rows=rows, recipe=recipe, cache_dir=str(cache_dir),
                              dataset_name=recipe.name, hash=fingerprint[:16],
                              writer_batch_size=row_group_rows(max_image_bytes, max_row_group_bytes))
    raw = staging / "raw"
    builder.download_and_prepare(output_dir=str(raw), file_format="parquet", max_shard_size=MAX_SHARD_SIZE,
                                 download_mode="force_redownload")
    files = sorted(raw.glob(f"{builder.dataset_name}-train*.parquet"))
    (staging / DATA).mkdir(parents=True, exist_ok=True)
    names = []
    for i, f in enumerate(files):
        name = data_file(i, len(files))
        os.replace(f, staging / name)
        names.append(name)
    shutil.rmtree(raw)
    for lock in staging.glob("*.lock"):  # the builder's file locks next to its output dir
        lock.unlink()
    info = builder.info
    info.download_size = sum((staging / n).stat().st_size for n in names)  # what a consumer downloads
    return names, info
