"""The build's working state under DIR/.synthvlm/: what survives a crash.

Every file lands by write-temp, fsync, rename; a shard counts as finished only
when its completion marker (row count + sha256 of the file) exists and matches.
A `kill -9` at any instant therefore leaves either a finished shard or nothing
that will ever be used.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .captions import caption_line, parse_caption_line
from .config import Caption
from .errors import InputError

WORK = ".synthvlm"


def atomic_write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ShardCheck:
    index: int
    ok: bool
    reason: str = ""


class WorkDir:
    def __init__(self, out_dir: Path):
        self.out = Path(out_dir)
        self.root = self.out / WORK
        self.shards = self.root / "shards"
        self.captions = CaptionStore(self.root)
        self._lock = None

    # --- ownership -------------------------------------------------------------------
    def claim(self, fingerprint: str, shard_size: int, overwrite: bool) -> str:
        """Take the dir for this build. Returns 'new' or 'resume'.
        Refuses (exit 2) another recipe's build unless overwrite, and never
        touches a non-empty dir that is not a synthvlm build."""
        state_file = self.root / "state.json"
        if self.out.exists() and any(self.out.iterdir()) and not state_file.exists():
            raise InputError("output.dir", f"{self.out} exists, is not empty and holds no synthvlm build;"
                             " choose an empty or new directory")
        mode = "new"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if state["fingerprint"] == fingerprint and state["shard_size"] == shard_size:
                mode = "resume"
            elif not overwrite:
                what = (f"another recipe's build (fingerprint {state['fingerprint'][:12]}, this recipe has"
                        f" {fingerprint[:12]})" if state["fingerprint"] != fingerprint else
                        f"a build with execution.shard_size {state['shard_size']} (now {shard_size})")
                raise InputError("output.dir", f"{self.out} holds {what}; pass --overwrite to replace it,"
                                 " or build into another --output")
            else:
                self._wipe()
        self.out.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        self._take_lock()
        if mode == "new":
            atomic_write(state_file, json.dumps({"fingerprint": fingerprint, "shard_size": shard_size}) + "\n")
        self.shards.mkdir(exist_ok=True)
        for stray in self.root.rglob(".*.tmp*"):  # partial writes of a killed run
            stray.unlink(missing_ok=True)
        return mode

    def _wipe(self) -> None:
        for child in self.out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    def _take_lock(self) -> None:
        self._lock = open(self.root / "lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError("output.dir", f"another synthvlm-build is running in {self.out}") from None

    def release(self) -> None:
        if self._lock:
            self._lock.close()
            self._lock = None

    # --- shards ------------------------------------------------------------------------
    def shard_path(self, index: int) -> Path:
        return self.shards / f"shard-{index:05d}.parquet"

    def marker_path(self, index: int) -> Path:
        return self.shards / f"shard-{index:05d}.done.json"

    def shard_tmp(self, index: int) -> Path:
        return self.shards / f".shard-{index:05d}.parquet.tmp-{os.getpid()}"

    def finish_shard(self, index: int, tmp: Path, rows: int, extra: dict) -> dict:
        """fsync + rename the shard file into place, then write its marker."""
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        final = self.shard_path(index)
        os.replace(tmp, final)
        fsync_dir(self.shards)
        marker = {"shard": index, "rows": rows, "bytes": final.stat().st_size, "sha256": sha256_file(final),
                  **extra}
        atomic_write(self.marker_path(index), json.dumps(marker, sort_keys=True) + "\n")
        return marker

    def check_shard(self, index: int) -> ShardCheck:
        marker_file, shard_file = self.marker_path(index), self.shard_path(index)
        if not marker_file.exists():
            return ShardCheck(index, False, "not finished" if not shard_file.exists() else "no completion marker")
        try:
            marker = json.loads(marker_file.read_text())
        except (OSError, ValueError):
            return ShardCheck(index, False, "unreadable completion marker")
        if not shard_file.exists():
            return ShardCheck(index, False, "shard file missing")
        if shard_file.stat().st_size != marker["bytes"]:
            return ShardCheck(index, False, f"size {shard_file.stat().st_size} != {marker['bytes']} (truncated?)")
        if sha256_file(shard_file) != marker["sha256"]:
            return ShardCheck(index, False, "checksum mismatch (corrupt)")
        return ShardCheck(index, True)

    def discard_shard(self, index: int) -> None:
        self.marker_path(index).unlink(missing_ok=True)
        self.shard_path(index).unlink(missing_ok=True)

    def marker(self, index: int) -> dict:
        return json.loads(self.marker_path(index).read_text())

    # --- log -----------------------------------------------------------------------------
    def log(self, event: str, **fields) -> None:
        """Append-only event log (one JSON per line): what each run did, for humans and tests."""
        line = json.dumps({"t": round(time.time(), 3), "pid": os.getpid(), "event": event, **fields})
        with open(self.root / "events.jsonl", "a") as f:
            f.write(line + "\n")
            f.flush()

    def events(self) -> list[dict]:
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip().endswith("}")]


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
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        offsets, n = [], 0
        with open(tmp, "wb") as f:
            for c in captions:
                if n % shard_size == 0:
                    offsets.append(f.tell())
                f.write(caption_line(c).encode("utf-8"))
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        meta = {"count": n, "sha256": sha256_file(self.path), "shard_size": shard_size,
                "shard_offsets": offsets, "funnel": funnel()}
        atomic_write(self.meta_path, json.dumps(meta) + "\n")
        self._meta = meta
        return meta

    def shard(self, index: int) -> list[Caption]:
        meta = self.meta()
        offsets = meta["shard_offsets"]
        with open(self.path, "rb") as f:
            f.seek(offsets[index])
            end = offsets[index + 1] if index + 1 < len(offsets) else None
            data = f.read(end - offsets[index]) if end is not None else f.read()
        return [parse_caption_line(line) for line in data.splitlines()]
