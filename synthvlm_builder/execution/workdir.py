"""One build's working state under DIR/.synthvlm/builds/KEY/: what survives a crash.

Every file lands by write-temp, fsync, rename; a shard counts as finished only
when its completion marker (row count + sha256 of the file) exists and matches.
A `kill -9` at any instant therefore leaves either a finished shard or nothing
that will ever be used.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_open, atomic_path, atomic_write, is_temp, remove, sha256_file
from ..curation.captions import caption_line, parse_caption_line
from ..recipe.config import Caption

WORK = ".synthvlm"  # the build's work state, inside the output dir; never published

# Per-stage seconds each shard's completion marker records ("score": every score of the batch).
STAGES = ("generate", "encode", "score", "write")


@dataclass
class ShardCheck:
    ok: bool
    reason: str = ""


class WorkDir:
    """One build's work state: DIR/.synthvlm/builds/KEY/ (see outdir.py for the dir around it)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.captions = CaptionStore(self.root)

    def prepare(self, state: dict) -> bool:
        """Create the folder (writing its state) or take it up again; True when it already existed.
        Partial writes a killed run left behind are removed."""
        existed = (self.root / "state.json").exists()
        self.shards.mkdir(parents=True, exist_ok=True)
        if not existed:
            atomic_write(self.root / "state.json", json.dumps(state, indent=1) + "\n")
        for stray in [p for p in self.root.rglob(".*") if is_temp(p)]:
            remove(stray)
        return existed

    # --- shards ------------------------------------------------------------------------
    def shard_path(self, index: int) -> Path:
        return self.shards / f"shard-{index:05d}.parquet"

    def marker_path(self, index: int) -> Path:
        return self.shards / f"shard-{index:05d}.done.json"

    @contextmanager
    def shard_writer(self, index: int):
        """Yields the temp path to write shard `index` to; it is renamed into place on success."""
        with atomic_path(self.shard_path(index)) as tmp:
            yield tmp

    def mark_done(self, index: int, rows: int, extra: dict) -> dict:
        """Write the completion marker of a shard already in place: a shard counts as finished
        only when its marker exists and its size and sha256 match."""
        final = self.shard_path(index)
        marker = {"shard": index, "rows": rows, "bytes": final.stat().st_size, "sha256": sha256_file(final),
                  **extra}
        atomic_write(self.marker_path(index), json.dumps(marker, sort_keys=True) + "\n")
        return marker

    def check_shard(self, index: int) -> ShardCheck:
        marker_file, shard_file = self.marker_path(index), self.shard_path(index)
        if not marker_file.exists():
            return ShardCheck(False, "not finished" if not shard_file.exists() else "no completion marker")
        try:
            marker = json.loads(marker_file.read_text())
        except (OSError, ValueError):
            return ShardCheck(False, "unreadable completion marker")
        if not shard_file.exists():
            return ShardCheck(False, "shard file missing")
        if shard_file.stat().st_size != marker["bytes"]:
            return ShardCheck(False, f"size {shard_file.stat().st_size} != {marker['bytes']} (truncated?)")
        if sha256_file(shard_file) != marker["sha256"]:
            return ShardCheck(False, "checksum mismatch (corrupt)")
        return ShardCheck(True)

    def discard_shard(self, index: int) -> None:
        self.marker_path(index).unlink(missing_ok=True)
        self.shard_path(index).unlink(missing_ok=True)

    def marker(self, index: int) -> dict:
        return json.loads(self.marker_path(index).read_text())

    def read_columns(self, n_shards: int, columns, schema):
        """Some columns of every candidate, in plan order (selection reads scores: no images)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(self.shard_path(i), columns=list(columns)) for i in range(n_shards)]
        return pa.concat_tables(tables) if tables else schema.empty_table().select(list(columns))

    # --- log -----------------------------------------------------------------------------
    def log(self, event: str, **fields) -> None:
        """Append-only event log (one JSON per line): what each run did, for humans and tests."""
        line = json.dumps({"t": round(time.time(), 3), "pid": os.getpid(), "event": event, **fields})
        with open(self.root / "events.jsonl", "a") as f:
            f.write(line + "\n")
            f.flush()


class CaptionStore:
    """The curated captions of a build (one JSON line each) plus the byte offset where each
    shard starts, so a shard's captions are read with one seek: memory stays flat however
    many captions a build has, and a resumed build reuses exactly the captions it started with."""

    def __init__(self, root: Path):
        self.path = root / "captions.jsonl"
        self.meta_path = root / "captions.json"
        self._meta = None

    def meta(self) -> dict | None:
        """The stored captions' metadata, or None if there are none (or they do not verify)."""
        if self._meta is None and self.meta_path.exists() and self.path.exists():
            meta = json.loads(self.meta_path.read_text())
            if sha256_file(self.path) == meta["sha256"]:
                self._meta = meta
        return self._meta

    def write(self, captions, funnel, shard_size: int) -> dict:
        """Stream `captions` to disk (atomically); `funnel()` is read once they are exhausted."""
        offsets, n = [], 0
        with atomic_open(self.path, "wb") as f:
            for c in captions:
                if n % shard_size == 0:
                    offsets.append(f.tell())
                f.write(caption_line(c).encode("utf-8"))
                n += 1
        meta = {"count": n, "sha256": sha256_file(self.path), "shard_size": shard_size,
                "shard_offsets": offsets, "funnel": funnel()}
        atomic_write(self.meta_path, json.dumps(meta) + "\n")
        self._meta = meta
        return meta

    def discard(self) -> None:
        self.meta_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        self._meta = None

    def shard(self, index: int) -> list[Caption]:
        meta = self.meta()
        offsets = meta["shard_offsets"]
        with open(self.path, "rb") as f:
            f.seek(offsets[index])
            end = offsets[index + 1] if index + 1 < len(offsets) else None
            data = f.read(end - offsets[index]) if end is not None else f.read()
        return [parse_caption_line(line) for line in data.splitlines()]
