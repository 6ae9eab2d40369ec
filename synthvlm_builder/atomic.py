"""Atomic writes: every file this package writes lands whole or not at all.

A file is written under a temp name beside its target, fsynced, renamed over the target, and
the directory is fsynced, so a crash or `kill -9` at any instant leaves the old file or the new
one, never a mix. Temp names start with "." and contain TMP_MARK, so a later run can find and
remove what a killed run left behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Iterator

TMP_MARK = ".tmp-"


def temp_sibling(path: Path) -> Path:
    """A unique hidden temp name in `path`'s folder (same file system, so a rename is atomic)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temp(path: Path) -> bool:
    return path.name.startswith(".") and TMP_MARK in path.name


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (files a library wrote without fsync)."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(folder))


def remove(path: Path) -> None:
    """Delete a file or a folder tree, if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path for the caller (or any library) to write; on success it is fsynced and
    renamed to `path`, on any error (KeyboardInterrupt included) it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if tmp.is_dir():
            fsync_tree(tmp)
        else:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """open() for writing, atomically: the file appears at `path` only once closed successfully."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()


def atomic_write(path: Path, data: bytes | str) -> None:
    with atomic_open(Path(path), "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
