"""Export a finished build as WebDataset tar shards, the format streaming trainers read
(open_clip, webdataset, img2dataset's output).

    OUT/00000.tar ... OUT/NNNNN.tar   each sample: <key>.jpg|png|webp, <key>.txt (the caption),
                                      <key>.json (every published column but the image, and as
                                      img2dataset writes them, `key` and the image's `sha256`)
    OUT/index.json                    the shards, with sample counts, bytes and sha256
    OUT/sizes.json                    {"00000.tar": samples, ...}: where open_clip's training loader
                                      (open_clip_train/data.py get_dataset_size) reads the sample count

Samples keep the build's order; a sample's files are adjacent in its tar, as the readers require.
Keys come from stages/format.py:sample_key (unique per id, no dots, no slashes). Tar headers carry
no time, owner or permissions of this machine, so the same build always exports the same bytes.
The whole folder is written under a temp name and renamed into place (atomic.py).
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from ..atomic import atomic_path, sha256_file
from ..stages.format import EXTENSIONS, sample_key
from .export import ExportResult, check_new_folder, format_of, read_rows
from ..layout import release_data

INDEX = "index.json"
SIZES = "sizes.json"
IMG2DATASET_FIELDS = ("key", "sha256")  # beside the row's columns in each <key>.json, as img2dataset names them
DEFAULT_SHARD_BYTES = 1_000_000_000  # ~1 GB: the size WebDataset's authors recommend streaming in
BLOCK = 512                            # tar writes every header and file in 512-byte blocks


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    return info, data


def sample_files(row: dict, json_columns: list[str]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The tar members of one dataset row."""
    key = sample_key(row["id"])
    ext = EXTENSIONS[format_of(row["image"]["path"])]
    meta = {name: row[name] for name in json_columns}
    meta.update(key=key, sha256=hashlib.sha256(row["image"]["bytes"]).hexdigest())
    return [_member(f"{key}.{ext}", row["image"]["bytes"]),
            _member(f"{key}.txt", row["caption"].encode("utf-8")),
            _member(f"{key}.json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"))]


def _tar_bytes(members) -> int:
    return sum(BLOCK + -(-len(data) // BLOCK) * BLOCK for _, data in members)


def _file_size(content: int) -> int:
    """A tar file's size on disk: its members, two zero blocks, padded to tarfile's 10240-byte records."""
    return -(-(content + 2 * BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class _Shards:
    """Tar files in a folder, a new one started when the next sample would pass a limit."""

    def __init__(self, folder: Path, max_samples: int | None, max_bytes: int | None):
        self.folder, self.max_samples, self.max_bytes = folder, max_samples, max_bytes
        self.index: list[dict] = []
        self._tar = self._file = None
        self._samples = self._bytes = 0

    def add(self, members) -> None:
        size = _tar_bytes(members)
        full = self._tar is not None and (
            (self.max_samples and self._samples >= self.max_samples)
            or (self.max_bytes and _file_size(self._bytes + size) > self.max_bytes))  # a big sample: its own shard
        if self._tar is None or full:
            self.close()
            name = f"{len(self.index):05d}.tar"
            self._file = open(self.folder / name, "wb")
            self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
            self.index.append({"file": name})
            self._samples = self._bytes = 0
        for info, data in members:
            self._tar.addfile(info, io.BytesIO(data))
        self._samples += 1
        self._bytes += size

    def close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._file.close()
        path = self.folder / self.index[-1]["file"]
        self.index[-1].update(samples=self._samples, bytes=path.stat().st_size,
                              sha256=sha256_file(path))
        self._tar = self._file = None


def published_columns(files: list[Path]) -> list[str]:
    """The build's dataset columns (which ones depend on its recipe), in the order its data files hold
    them (stages/rows.py's, which wrote them)."""
    import pyarrow.parquet as pq
    return list(pq.ParquetFile(files[0]).schema_arrow.names)


def export_webdataset(build_dir: Path, out: Path, shard_size: int | None = None,
                      shard_bytes: int | None = None) -> ExportResult:
    files = release_data(build_dir)  # only what the build's manifest lists: nothing else in the dir is read
    check_new_folder(out, "--webdataset")
    if shard_size is None and shard_bytes is None:
        shard_bytes = DEFAULT_SHARD_BYTES
    columns = published_columns(files)
    json_columns = [c for c in columns if c != "image"]
    with atomic_path(out) as tmp:  # renamed over `out` if that is an empty folder
        tmp.mkdir()
        shards = _Shards(tmp, shard_size, shard_bytes)
        keys: set[str] = set()
        extensions: set[str] = set()
        for row in read_rows(files, columns):
            members = sample_files(row, json_columns)
            key = members[0][0].name.split(".", 1)[0]
            if key in keys:  # sample_key is injective: this would be a bug, not a data problem
                raise AssertionError(f"two rows share the WebDataset key {key!r}")
            keys.add(key)
            extensions.update(info.name.split(".", 1)[1] for info, _ in members)
            shards.add(members)
        shards.close()
        last = len(shards.index) - 1
        index = {"format": "webdataset", "samples": len(keys), "shards": shards.index,
                 "url": f"{{00000..{last:05d}}}.tar" if last > 0 else "00000.tar",
                 "extensions": sorted(extensions),
                 "json_fields": json_columns + list(IMG2DATASET_FIELDS)}
        (tmp / INDEX).write_text(json.dumps(index, indent=1) + "\n")
        sizes = {s["file"]: s["samples"] for s in shards.index}
        (tmp / SIZES).write_text(json.dumps(sizes, indent=1) + "\n")
    total = sum(s["bytes"] for s in shards.index)
    return ExportResult("webdataset", out, len(keys),
                        tuple(out / s["file"] for s in shards.index) + (out / INDEX, out / SIZES),
                        f"exported {len(keys):,} samples in {len(shards.index)} shard(s), {total:,} bytes ->"
                        f" {out}/{index['url']} (index: {out}/{INDEX})")
