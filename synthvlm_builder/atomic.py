"""Atomic writes: every file this package writes lands whole or not at all.

A file is written under a temp name beside its target, fsynced, renamed over the target, and
the directory is fsynced, so a crash or `kill -9` at any instant leaves the old file or the new
one, never a mix. Temp names start with "." and contain TMP_MARK, so a later run can find and
remove what a killed run left behind.

A rename replaces whatever node is at the target, so the target is checked first (and again just
before the rename): only a regular file (or, for a folder written whole, a folder) is ever replaced.
A device, a FIFO or a socket is refused (`captions --output /dev/null` run as root would otherwise
replace the real /dev/null), and so is a symbolic link: it is NOT followed on purpose, because a link
planted in a build dir would then redirect a write outside it; the CLI names the file to give instead.

What is at a path is named here too: `node_kind` for a place a verb writes, `not_a_file` for an input
file that cannot be read (a recipe's caption file: validate and the caption stage say the same).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import IO, Iterator

from .errors import UnsafeOutput

TMP_MARK = ".tmp-"
_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))
# What an input file that cannot be read is, in not_a_file's messages (their wording is older than node_kind's)
_INPUT_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


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


def node_kind(path: os.PathLike | str, follow: bool = False) -> str | None:
    """What is at `path` ("a regular file", "a folder", "a FIFO (named pipe)", ...), None if nothing;
    with `follow`, what a symbolic link points to."""
    try:
        mode = (os.stat if follow else os.lstat)(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")


def not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as a caption file ("... is a directory, not a file"), or None for a
    regular file (a symbolic link is followed). Never opens it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{path} is a symbolic link to {os.readlink(path)}, which does not exist"
        return f"no such file: {path}"
    except OSError as e:  # a path through a file, a loop of links, no permission on a folder
        return f"cannot use {path}: {e.strerror or e}"
    if stat.S_ISREG(st.st_mode):
        return None
    what = next((name for test, name in _INPUT_KINDS if test(st.st_mode)), "not a regular file")
    if os.path.islink(path):
        return f"{path} is a symbolic link to {os.path.realpath(path)}, {what}, not a regular file"
    return f"{path} is {what}, not a regular file"


def check_replaceable(path: Path, folder: bool | None = None) -> None:
    """UnsafeOutput unless a rename may replace what is at `path`: nothing, a regular file (`folder`
    False), a folder (`folder` True), or either (`folder` None, before the caller has written)."""
    what = node_kind(path)
    allowed = {None: ("a regular file", "a folder"), False: ("a regular file",), True: ("a folder",)}[folder]
    if what is not None and what not in allowed:
        raise UnsafeOutput(path, f"is {what}; a write replaces its target whole, by a rename, and never"
                           f" replaces {what}" + (" (write to standard output with -)" if folder is not True else ""))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path for the caller (or any library) to write; on success it is fsynced and
    renamed to `path`, on any error (KeyboardInterrupt included) it is removed. What is at `path`
    must be replaceable (check_replaceable), before any work and again before the rename."""
    path = Path(path)
    if path.name in ("", ".", ".."):  # "." or "x/..": name the folder itself, so a sibling can be made
        path = Path(os.path.abspath(path))
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if tmp.is_dir():
            fsync_tree(tmp)
        else:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        check_replaceable(path, folder=tmp.is_dir())
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
