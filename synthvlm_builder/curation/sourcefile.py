"""One local caption file, opened safely and read once, every byte hashed as it is read.

The build digests each caption file for its content identity before it takes the output dir's lock,
and curates it afterwards. Editors and sync tools replace files by rename, so the file read for the
curation may not be the one digested: `SourceFile` hashes the bytes the reader actually consumes
(reading on to the end when a `limit` stops the reader early) and `check_digest` compares them with
the digest taken before, refusing on a change (execution/curate.py `curate_build`).

Only regular files are opened. A directory, a named pipe (opening one blocks until a writer comes), a
device such as /dev/zero (endless) or a socket is named for what it is, from `os.stat`, before any
open; the open itself is non-blocking, so a path swapped for a FIFO after the check cannot hang it.

Text is decoded line by line as strict UTF-8 (a byte-order mark starting a line is skipped), so a bad
byte is reported with its line and column; lines end at \\n, \\r\\n or \\r, as Python's text files do.
"""
from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
import stat
from pathlib import Path
from typing import Iterator

from ..atomic import not_a_file
from ..errors import InputError

BOM = codecs.BOM_UTF8
BLOCK = 1 << 20
_LINE_ENDS = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

class _Hashing(io.RawIOBase):
    """A raw reader that hashes every byte passing through it, in order."""

    def __init__(self, raw, digest):
        self._raw, self._digest, self.bytes_read = raw, digest, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
            self.bytes_read += n
        return n


class SourceFile:
    """A regular file opened for one sequential read; `stream` is a buffered binary reader over it.
    Raises InputError(field) when the path is not a readable regular file."""

    def __init__(self, path: Path, field: str):
        self.path, self.field = Path(path), field
        why = not_a_file(self.path)
        if why:
            raise InputError(field, why)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise InputError(field, f"cannot read {self.path}: {e.strerror or e}") from None
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._stat = os.fstat(fd)
        if not stat.S_ISREG(self._stat.st_mode):  # swapped for something else after the check above
            self._file.close()
            raise InputError(field, not_a_file(self.path) or f"{self.path} is not a regular file")
        os.set_blocking(fd, True)
        self._sha = hashlib.sha256()
        self._hashing = _Hashing(self._file, self._sha)
        self.stream = io.BufferedReader(self._hashing, BLOCK)
        self._digest: str | None = None
        self._random = False

    def __enter__(self) -> "SourceFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def chunks(self, size: int = BLOCK) -> Iterator[bytes]:
        while chunk := self.stream.read(size):
            yield chunk

    def lines(self) -> Iterator[tuple[int, str]]:
        """(1-based line number, line text with its line end) for every line, decoded as strict UTF-8."""
        lineno = 0
        while raw := self.stream.readline():  # ends at b"\n" only; a lone b"\r" ends a line too (universal newlines)
            lone_cr = b"\r" in raw and not (raw.endswith(b"\r\n") and raw.count(b"\r") == 1)
            pieces = _LINE_ENDS.findall(raw) if lone_cr else [raw]
            del raw  # only one copy of a long line is kept while it is read
            while pieces:
                lineno += 1
                piece = pieces.pop(0)
                # a byte-order mark starts the file, or a line of files joined with `cat`: never text
                yield lineno, self._decode(piece[len(BOM):] if piece.startswith(BOM) else piece, lineno)

    def _decode(self, raw: bytes, lineno: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(self.field, f"not UTF-8 text ({e.reason} at column {e.start + 1})",
                             location=f"{self.path}:{lineno}") from None

    def random_access(self):
        """For formats read out of order (parquet): every byte is hashed now, in one sequential pass,
        and the open file (the same one: a rename cannot swap it) is returned at offset 0."""
        self.digest()
        self._random = True
        self._file.seek(0)
        return self._file

    def digest(self) -> str:
        """The sha256 of the whole file as read through this object: what the reader has not consumed
        is read (and hashed) now."""
        if self._digest is None:
            while self.stream.read(BLOCK):
                pass
            self._digest = self._sha.hexdigest()
        return self._digest

    def changed_in_place(self) -> bool:
        """For a file read out of order (hashed before it was parsed): True when its size or
        modification time changed since it was opened, i.e. it was written into while parsed. A file
        read in order needs no such check: its hash covers the very bytes parsed."""
        if not self._random:
            return False
        now = os.fstat(self._file.fileno())
        return (now.st_size, now.st_mtime_ns) != (self._stat.st_size, self._stat.st_mtime_ns)


def file_digest(path: Path, field: str) -> str:
    """The sha256 of a caption file, opened as the readers open it."""
    with SourceFile(path, field) as f:
        return f.digest()


def check_digest(f: SourceFile, expected: str | None, pinned: str | None, pin_field: str) -> None:
    """After a reader is done: the bytes read must be the bytes digested before (`expected`, the
    content identity's "sha256:HEX") and the recipe's pin (`pinned`, HEX), when given."""
    if expected is None and pinned is None:
        return
    read = f.digest()
    before = expected.split(":", 1)[1] if expected and expected.startswith("sha256:") else None
    if (before is not None and read != before) or f.changed_in_place():
        raise InputError(f.field, f"{f.path} changed while the build read it (sha256 {before or 'unknown'}"
                         f" before, {read} read): rerun once it no longer changes")
    if pinned and read != pinned:
        raise pin_mismatch(f.path, read, pinned, pin_field)


def pin_mismatch(path: Path, digest: str, pinned: str, field: str) -> InputError:
    return InputError(field, f"{path} has sha256 {digest}, the recipe pins {pinned}: the file changed;"
                      " restore it or update the pin (and the version)")
