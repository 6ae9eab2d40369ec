"""A recipe as a Hugging Face `datasets` builder: `recipe.as_builder()` (README "The recipe as a datasets
builder").

    builder = recipe.as_builder()
    builder.download_and_prepare()          # runs (or resumes, or finds) the build, then caches its rows
    ds = builder.as_dataset(split="train")  # the published Features (stages/rows.py)
    it = builder.as_streaming_dataset(split="train")

`download_and_prepare` runs the real build (api.build) into a build dir under the builder's cache dir,
named by the recipe's content identity (its data fingerprint joined with its input files' digests), so
a rerun resumes it and an identical recipe finds it; `datasets` then caches the rows under the same
identity (the builder's `hash`): a second `download_and_prepare` of the same data is a cache hit that
builds nothing. Streaming reads the build's Parquet files directly (building them first if needed).

`datasets` >= 4 runs no dataset scripts, so this builder is for programmatic use; a published release
needs no code at all: it is Parquet plus card metadata, and `load_dataset("org/name")` reads it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.table import table_cast

from .recipe.config import Recipe
from .reporter import Reporter

BUILDS = "synthvlm_builds"  # under the builder's cache dir: <name>-v<version>-<identity[:16]>/


class RecipeBuilder(datasets.ArrowBasedBuilder):
    """The dataset a recipe describes. `cache_dir`: the datasets cache (default: HF_DATASETS_CACHE);
    `build_dir`: where to build (default: under `cache_dir`, by content identity); `executor`, `device`
    and `reporter` as for `synthvlm_builder.build`; other keyword arguments go to DatasetBuilder."""

    def __init__(self, recipe: Recipe, cache_dir: Optional[str | os.PathLike] = None,
                 build_dir: Optional[str | os.PathLike] = None, executor: Optional[str] = None,
                 device: Optional[str] = None, reporter: Optional[Reporter] = None, **options):
        from .api import identity
        self.recipe, self.executor, self.device, self.reporter = recipe, executor, device, reporter
        self.identity = identity(recipe, reporter=reporter)
        super().__init__(cache_dir=None if cache_dir is None else os.fspath(cache_dir), dataset_name=recipe.name,
                         config_name="default", hash=self.identity, version=_version(recipe.version), **options)
        self.build_dir = Path(build_dir) if build_dir is not None else (
            Path(self._cache_dir_root) / BUILDS / f"{recipe.name}-v{recipe.version}-{self.identity[:16]}")
        self.build_result = None  # the API's BuildResult once this builder has run the build

    def download_and_prepare(self, *args, **kwargs):
        """datasets' own, with this builder's reporter in use throughout (its bars included)."""
        from .reporter import datasets_bars, use
        with use(self.reporter), datasets_bars():
            return super().download_and_prepare(*args, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        from .release.dataset import CITATION
        from .stages.rows import features
        return datasets.DatasetInfo(description=self.recipe.description, features=features(self.recipe),
                                    license=self.recipe.license, citation=CITATION)

    def _split_generators(self, dl_manager):
        """Runs the build (resumes it, or finds it finished: then nothing is generated again)."""
        from .api import build
        from .layout import release_data
        self.build_result = build(self.recipe, output_dir=self.build_dir, executor=self.executor, device=self.device,
                                  reporter=self.reporter)
        files = [str(f) for f in release_data(self.build_result.path)]
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"files": files})]

    def _generate_tables(self, files: list[str]):
        schema = self.info.features.arrow_schema
        for i, path in enumerate(files):
            for j, batch in enumerate(pq.ParquetFile(path).iter_batches(batch_size=100)):
                yield (i, j), table_cast(pa.Table.from_batches([batch]), schema)


def _version(version: str) -> str:
    """The x.y.z of a semantic version (`datasets.Version` takes no pre-release or build suffix; the
    cache is keyed by the content identity, which every data field and input file enters)."""
    m = re.match(r"\d+\.\d+\.\d+", version)
    return m.group(0) if m else "0.0.0"
