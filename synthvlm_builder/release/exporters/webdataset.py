"""webdataset: WebDataset tar shards for streaming trainers (open_clip, webdataset, img2dataset's
output): OUT/00000.tar ... with <key>.<image>, <key>.txt and <key>.json per sample, and OUT/index.json."""
from __future__ import annotations

from pathlib import Path

from ...units import parse_bytes, parse_count
from ..exporter import ExportOption, Exporter


class WebDatasetExporter(Exporter):
    name = "webdataset"
    summary = "WebDataset tar shards (OUT/00000.tar ... + OUT/index.json)"
    order = 20
    options = (ExportOption("--shard-size", "N", "at most N samples per tar", parse_count),
               ExportOption("--shard-bytes", "B", "at most B bytes per tar (e.g. 1GB; the default)", parse_bytes))

    @classmethod
    def check(cls, options: dict) -> None:
        from ...errors import InputError
        if options.get("shard_size") is not None and options.get("shard_bytes") is not None:
            raise InputError("shard_size", "give shard_size or shard_bytes, not both")

    @classmethod
    def export(cls, build_dir: Path, out: Path, shard_size=None, shard_bytes=None, **options):
        from ..webdataset import export_webdataset
        return export_webdataset(Path(build_dir), Path(out), shard_size=shard_size, shard_bytes=shard_bytes)
