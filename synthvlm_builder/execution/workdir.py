"""One build's working state under DIR/.synthvlm/builds/KEY/: what survives a crash.

Every file lands by write-temp, fsync, rename; a shard counts as finished only
when its completion marker (row count + sha256 of the file) exists and matches.
A `kill -9` at any instant therefore leaves either a finished shard or nothing
that will ever be used. Everything read back is checked first (state.py): a completion
marker or caption index that does not hold up means "make that again", never a traceback.

A build in object storage (execution/remote.py) works in a local copy of this folder and gives it a
`mirror`, the store's copy: each file that makes state durable is sent there as soon as it is final, in
the same order (the shard, then its marker; the captions, then their index), and a Ray actor on another
node keeps only scratch copies (`fetch_captions`, `forget_shard`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import reporter
from ..atomic import atomic_open, atomic_path, atomic_write, is_temp, remove, sha256_file
from ..curation.captions import caption_line, parse_caption_line
from ..layout import (BATCH, CURATED, CURATED_INDEX, EVENTS, SHARDS, STATE, UPLOADS, WORK_FILES, marker_file,
                      shard_file)
from ..recipe.config import Caption
from ..state import StateError, load
from ..storage import Store
from ..text import printable


@dataclass
class ShardCheck:
    ok: bool
    reason: str = ""


class WorkDir:
    """One build's work state: DIR/.synthvlm/builds/KEY/ (see outdir.py for the dir around it)."""

    def __init__(self, root: Path, field: str = "DIR", mirror: Store | None = None):
        self.root = Path(root)
        self.shards = self.root / SHARDS
        self.mirror = mirror
        self.captions = CaptionStore(self.root, field, self._push)
        self.field = field  # where errors about the output dir point: --output or output.dir

    def prepare(self, state: dict) -> bool:
        """Create the folder (writing its state) or take it up again; True when it already existed.
        Partial writes a killed run left behind are removed; a state.json that is not valid is written
        anew (a run killed before writing it; the shards and captions here are each checked on their own)."""
        try:
            existed = bool(load(self.root / STATE, "build"))
        except StateError:
            existed = False
        if self.shards.is_symlink():  # shards are written here, never through a link to elsewhere
            self.shards.unlink()
        self.shards.mkdir(parents=True, exist_ok=True)
        if not existed:
            atomic_write(self.root / STATE, json.dumps(state, indent=1) + "\n")
            self._push(STATE)
        self.sweep()
        self.captions.shard_size = state.get("shard_size")
        return existed

    def sweep(self) -> None:
        """Remove the partial writes of runs or workers that were stopped (atomic.py temp names)."""
        for stray in [p for p in self.root.rglob(".*") if is_temp(p)]:
            remove(stray)

    def remove_own_files(self) -> None:
        """Remove what a build writes here (layout.py WORK_FILES, and temp files), then each folder left empty;
        anything else, and the folders holding it, stay."""
        if self.root.is_symlink() or not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            rel = path.relative_to(self.root).as_posix()
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            elif WORK_FILES.fullmatch(rel) or is_temp(path):
                path.unlink(missing_ok=True)
        if not any(self.root.iterdir()):
            self.root.rmdir()

    # --- shards ------------------------------------------------------------------------
    def shard_path(self, index: int) -> Path:
        return self.root / shard_file(index)

    def marker_path(self, index: int) -> Path:
        return self.root / marker_file(index)

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
        self._push(shard_file(index), marker_file(index))
        return marker

    def check_shard(self, index: int) -> ShardCheck:
        marker_file, shard_file = self.marker_path(index), self.shard_path(index)
        if not os.path.lexists(marker_file):
            return ShardCheck(False, "not finished" if not os.path.lexists(shard_file) else "no completion marker")
        try:
            marker = self._load_marker(index)
        except StateError as e:
            return ShardCheck(False, f"invalid completion marker ({printable(e.problem)})")
        if shard_file.is_symlink() or not shard_file.is_file():
            return ShardCheck(False, "shard file missing")
        if shard_file.stat().st_size != marker["bytes"]:
            return ShardCheck(False, f"size {shard_file.stat().st_size} != {marker['bytes']} (truncated?)")
        if sha256_file(shard_file) != marker["sha256"]:
            return ShardCheck(False, "checksum mismatch (corrupt)")
        return ShardCheck(True)

    def discard_shard(self, index: int) -> None:
        self.marker_path(index).unlink(missing_ok=True)
        self.shard_path(index).unlink(missing_ok=True)
        self._push(marker_file(index), shard_file(index), delete=True)

    # --- the store's copy (execution/remote.py) -----------------------------------------------------
    def _push(self, *names: str, delete: bool = False) -> None:
        """Send these files to the mirror in this order (or delete them there); nothing without one."""
        for rel in names if self.mirror is not None else ():
            if delete:
                self.mirror.delete(rel)
            else:
                self.mirror.upload(self.root / rel, rel)

    def push_logs(self) -> None:
        """The files that only inform a later run (the event log, the batch size, --push's uploads)."""
        self._push(*(rel for rel in (EVENTS, BATCH, UPLOADS) if (self.root / rel).is_file()))

    def fetch_shards(self, indexes) -> None:
        """Shards finished elsewhere (Ray actors on other nodes): the shard, then its marker, from the
        mirror into this folder, where check_shard verifies them like any other."""
        for i in indexes:
            for rel in (shard_file(i), marker_file(i)):
                if self.mirror.exists(rel):
                    self.mirror.download(rel, self.root / rel)

    def fetch_captions(self) -> None:
        """The curated captions and their index from the mirror (an actor's scratch copy)."""
        for rel in (CURATED, CURATED_INDEX):
            self.mirror.download(rel, self.root / rel)

    def forget_shard(self, index: int) -> None:
        """Drop the local copy of a shard the mirror holds (node-local disk is only scratch)."""
        self.marker_path(index).unlink(missing_ok=True)
        self.shard_path(index).unlink(missing_ok=True)

    def marker(self, index: int) -> dict:
        """The completion marker of a shard this run found (or made) finished."""
        try:
            return self._load_marker(index)
        except StateError as e:
            raise e.corrupt("rerun the same command: the shard is checked and made again", self.field) from None

    def _load_marker(self, index: int) -> dict:
        path = self.marker_path(index)
        marker = load(path, "marker")
        if marker["shard"] != index:
            raise StateError(path, f"shard: {marker['shard']} (the marker of another shard)")
        return marker

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
        with open(self.root / EVENTS, "a") as f:
            f.write(line + "\n")
            f.flush()


class CaptionStore:
    """The curated captions of a build (one JSON line each) plus the byte offset where each
    shard starts, so a shard's captions are read with one seek: memory stays flat however
    many captions a build has, and a resumed build reuses exactly the captions it started with."""

    def __init__(self, root: Path, field: str = "DIR", push=None):
        self.path = root / CURATED
        self._push = push or (lambda *names, delete=False: None)  # WorkDir._push: the store's copy
        self.meta_path = root / CURATED_INDEX
        self.shard_size: int | None = None  # the build's (WorkDir.prepare), when known
        self.field = field
        self._meta = None

    def meta(self) -> dict | None:
        """The stored captions' metadata, or None if there are none (or they do not verify: then the
        captions are curated again, as when a run stopped before storing them)."""
        if self._meta is None and os.path.lexists(self.meta_path):
            try:
                self._meta = self._verified(load(self.meta_path, "captions"))
            except StateError as e:
                reporter.note(f"stored captions not used: {printable(e)}")
        return self._meta

    def _verified(self, meta: dict) -> dict:
        """`meta` if it describes captions.jsonl exactly: its sha256, its line count, and each shard's
        offset at the start of that shard's first line (a seek anywhere else would split a caption)."""
        size = meta["shard_size"]
        if self.shard_size is not None and size != self.shard_size:
            raise StateError(self.meta_path, f"shard_size: {size}, but this build's shards hold {self.shard_size}")
        digest, offsets, count, pos = hashlib.sha256(), [], 0, 0
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    if count % size == 0:
                        offsets.append(pos)
                    digest.update(line)
                    pos += len(line)
                    count += 1
        except OSError as e:
            raise StateError(self.path, f"cannot be read ({e.strerror or e})") from None
        if digest.hexdigest() != meta["sha256"]:
            raise StateError(self.path, f"its sha256 is not the one {self.meta_path.name} records")
        if count != meta["count"] or offsets != meta["shard_offsets"]:
            raise StateError(self.meta_path, f"count and shard_offsets do not match {self.path.name}"
                             f" ({count} lines, shards starting at bytes {offsets[:5]}...)")
        return meta

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
        self._push(CURATED, CURATED_INDEX)
        self._meta = meta
        return meta

    def discard(self) -> None:
        self.meta_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        self._push(CURATED_INDEX, CURATED, delete=True)
        self._meta = None

    def shard(self, index: int) -> list[Caption]:
        meta = self.meta()
        if meta is None or not 0 <= index < len(meta["shard_offsets"]):
            raise StateError(self.meta_path, f"holds no shard {index} of the curated captions").corrupt(
                "rerun the same command: the captions are curated again", self.field)
        offsets = meta["shard_offsets"]
        with open(self.path, "rb") as f:
            f.seek(offsets[index])
            end = offsets[index + 1] if index + 1 < len(offsets) else None
            data = f.read(end - offsets[index]) if end is not None else f.read()
        return [parse_caption_line(line) for line in data.splitlines()]
