"""Where a verb writes: checked once, before any work, for the flag or field that named the place.

Every verb that writes (the build, `preview`, `captions --output`, `export`) and the model cache call
`check_output` first, so a place that cannot be written is exit 2 naming `--output`, `output.dir`,
`--llava`, `SYNTHVLM_CACHE`... before a caption is read or an image generated, instead of an OSError
(or worse, a replaced device) after the work. Only `stat` and `access` calls: nothing is created here.

    FILE        a file replaced whole by a rename (atomic.py): absent or a regular file. Never a symbolic
                link, a device, a FIFO (`>(cmd)`, `/dev/stdout`) or a socket: a rename would replace the
                node itself. A verb offers `-` (standard output) for those.
    FOLDER      a folder the verb writes files in (a build, a preview page, the cache): absent or a folder;
                a symbolic link to a folder is used as that folder.
    NEW_FOLDER  a folder written whole under a temp name and renamed into place (export): absent or a
                folder (its emptiness is the exporter's check). A symbolic link to a folder is resolved on
                purpose: the export lands where the link points and the link stays. Never the current
                directory or one holding it (the rename would leave the shell in a removed folder), and
                never the build dir or a folder inside it (a build dir holds only what the build made).

In every case the folders above the path that exist must be folders (not files, not dangling links),
the nearest existing one must be writable, and the name must be one the file system can store.
"""
from __future__ import annotations

import os
from pathlib import Path

from .atomic import node_kind
from .errors import InputError

FILE, FOLDER, NEW_FOLDER = "file", "folder", "new folder"


def check_output(path: os.PathLike | str, field: str, kind: str, outside: Path | None = None) -> Path:
    """The path to write (`path`, or for NEW_FOLDER the folder a link points to), or InputError(field)."""
    text = os.fspath(path)
    _check_name(text, field)
    here = Path(text)
    if os.path.islink(text) and not os.path.exists(text):
        raise InputError(field, f"{text} is a symbolic link to {os.readlink(text)}, which does not exist (or"
                         " loops back); create that or give another path")
    if os.path.exists(text):
        what = node_kind(text, follow=True)
        if kind == FILE:
            _check_existing_file(text, what, field)
        elif what != "a folder":
            raise InputError(field, f"{text} is {what}, not a folder; give a folder")
        elif kind == NEW_FOLDER and os.path.islink(text):
            here = Path(os.path.realpath(text))
        _check_writable(text if kind == FOLDER else os.path.dirname(os.path.abspath(here)), text, field)
    else:
        _check_writable(_nearest_existing(text, field), text, field)
    if kind == NEW_FOLDER:
        _check_not_around(here, field, outside)
    return here


def _check_name(text: str, field: str) -> None:
    if not text:
        raise InputError(field, "is empty; give a path")
    if "\x00" in text:
        raise InputError(field, f"{text!r} holds a NUL character, which no file name can")
    try:
        os.fsencode(text)
    except UnicodeEncodeError as e:
        raise InputError(field, f"{text!r} is not a file name this system can store (it holds"
                         f" {text[e.start]!r}, a lone surrogate)") from None


def _check_existing_file(text: str, what: str, field: str) -> None:
    stdout = f"; give {field} - to write to standard output" if field.startswith("-") else ""
    if what == "a folder":
        raise InputError(field, f"{text} is a folder, not a file; give a file name")
    if what != "a regular file":
        noun = what.split(" ", 1)[1].split(" (")[0]  # "a FIFO (named pipe)" -> "FIFO"
        raise InputError(field, f"{text} is {what}, not a regular file: the output is written to a temp file"
                         f" renamed over it, which would replace the {noun} itself{stdout}")
    if os.path.islink(text):
        raise InputError(field, f"{text} is a symbolic link (to {os.readlink(text)}): a rename would replace"
                         " the link, not the file it points to; give that file itself, or a new name")


def _nearest_existing(text: str, field: str) -> str:
    """The closest folder above a path that does not exist yet; every folder to make must be makeable."""
    folder = os.path.dirname(os.path.abspath(text))
    while True:
        if os.path.lexists(folder):
            if not os.path.exists(folder):
                raise InputError(field, f"{folder} is a symbolic link to {os.readlink(folder)}, which does not"
                                 f" exist, so {text} cannot be made")
            if not os.path.isdir(folder):
                raise InputError(field, f"{folder} is {node_kind(folder, follow=True)}, not a folder, so {text}"
                                 " cannot be made under it")
            return folder
        folder = os.path.dirname(folder)


def _check_writable(folder: str, text: str, field: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(field, f"cannot write {text}: no permission to write in {folder}")
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return
    for part in Path(os.path.abspath(text)).parts:
        if len(os.fsencode(part)) > limit:
            raise InputError(field, f"{text}: the name {part[:40]!r}... is longer than {limit} bytes,"
                             " the most this file system stores")


def _check_not_around(target: Path, field: str, outside: Path | None) -> None:
    real = Path(os.path.realpath(target))
    if outside is not None and os.path.isdir(outside):
        inside = Path(os.path.realpath(outside))
        if real == inside or inside in real.parents:
            where = "the build dir itself" if real == inside else f"inside the build dir {outside}"
            raise InputError(field, f"{target} is {where}; export to a folder outside it (a build dir holds only"
                             " what the build made, and publish sends what it holds)")
    cwd = Path(os.path.realpath(os.getcwd()))
    if real == cwd or real in cwd.parents:
        where = "the current directory" if real == cwd else "above the current directory"
        raise InputError(field, f"{target} is {where}: the export is written beside it and renamed over it, which"
                         f" would leave this shell in a removed folder; give a new folder, such as"
                         f" {Path(target) / 'export'}")

