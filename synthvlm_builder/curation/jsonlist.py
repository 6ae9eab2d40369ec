"""A JSON list of records (LLaVA's caption file), streamed by ijson's C backend (yajl), with its
errors reported on one line as `invalid JSON at byte N (line L, column C): reason`.

yajl is 20 times faster than ijson's pure-Python backend. It reads the file through `_Feed`, so the
chunk it is parsing is always known. Three things yajl gets wrong are guarded there:
- a byte-order mark, which yajl rejects, is skipped (it is still part of the file's digest);
- a `\\u` escape of a lone UTF-16 surrogate, which yajl silently turns into "?" (a lone high one) or
  into bytes Python cannot decode (a lone low one), is refused at its byte;
- integers are parsed as 64-bit (`use_float=True`): without it yajl hands Python integers of any
  length, and ijson 3.6 crashes the interpreter (segmentation fault) on one of over 4300 digits,
  Python's limit for converting digits to an int. An integer beyond 64 bits is refused instead.
yajl's own messages span three lines with a caret display; the position is recovered from them
(`_yajl_offset`) and counted in lines and columns of the file.
"""
from __future__ import annotations

import ast
import re
from typing import Iterator

from ..errors import InputError
from .sourcefile import BOM, SourceFile

CHUNK = 1 << 16
_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # \uD800-\uDFFF, a surrogate's escape
_REASONS = {"premature EOF": "the file ends inside the list (truncated?)",
            "integer overflow": "an integer beyond 64 bits (write large ids as strings)"}


class _Lines:
    """Byte offset -> (line, column) over a stream seen chunk by chunk (columns count bytes)."""

    def __init__(self):
        self.start, self.newlines, self.line_start = 0, 0, 0
        self.previous = None  # the last chunk and the counts before it: an escape may start there

    def at(self, chunk: bytes, offset: int) -> tuple[int, int]:
        """Line and column of absolute byte `offset`, in `chunk` (or just past it) or the chunk before."""
        start, newlines, line_start = self.start, self.newlines, self.line_start
        if offset < start and self.previous is not None:
            chunk, start, newlines, line_start = self.previous
        p = max(0, offset - start)
        last = chunk.rfind(b"\n", 0, p)
        column = p - last if last >= 0 else offset - line_start + 1
        return newlines + chunk.count(b"\n", 0, p) + 1, column

    def advance(self, chunk: bytes) -> None:
        self.previous = (chunk, self.start, self.newlines, self.line_start)
        last = chunk.rfind(b"\n")
        if last >= 0:
            self.line_start = self.start + last + 1
        self.newlines += chunk.count(b"\n")
        self.start += len(chunk)


class _SurrogateGuard:
    """Finds the first \\u escape of a lone surrogate in JSON text fed chunk by chunk: a high one
    (D800-DBFF) not followed at once by a low one (DC00-DFFF), or a low one not preceded by a high.
    An escape counts only when its backslash is not itself escaped (an even run of backslashes
    before it). Windows overlap by a few bytes so an escape split between chunks is still seen."""

    KEEP = 12

    def __init__(self):
        self.window, self.window_at, self.done, self.pending = b"", 0, 0, None
        self.odd_before = False  # the backslash run ending where `window` starts has odd length

    def feed(self, chunk: bytes) -> int | None:
        """The absolute offset of a lone surrogate's escape, or None so far."""
        cut = max(0, len(self.window) - self.KEEP)
        dropped = self.window[:cut]
        run = len(dropped) - len(dropped.rstrip(b"\\"))
        self.odd_before = (run % 2 == 1) ^ (self.odd_before and run == len(dropped))
        self.window_at += cut
        self.window = self.window[cut:] + chunk
        end = self.window_at + len(self.window)
        for m in _ESCAPE.finditer(self.window):
            at = self.window_at + m.start()
            if at < self.done or not self._real(m.start()):
                continue
            high = m.group()[3:4].lower() in b"89ab"
            if self.pending is not None and (at != self.pending or high):
                return self.pending - 6
            if not high and self.pending is None:
                return at
            self.pending = at + 6 if high else None
        self.done = end - 5  # an escape starting later is not complete yet: it is seen next time
        if self.pending is not None and self.pending + 6 <= end:
            return self.pending - 6
        return None

    def finish(self) -> int | None:
        return None if self.pending is None else self.pending - 6

    def _real(self, i: int) -> bool:
        before = self.window[:i]
        run = len(before) - len(before.rstrip(b"\\"))
        odd = (run % 2 == 1) ^ (self.odd_before and run == len(before))
        return not odd


def _yajl_offset(message: str, chunk: bytes) -> int | None:
    """The offset in `chunk` yajl stopped at, from its three-line message: the second line shows up
    to 30 bytes either side of it (line breaks as spaces), the third a caret under it."""
    if message.startswith(("b'", 'b"')):  # ijson could not decode the message: it is a bytes repr
        try:
            raw = ast.literal_eval(message)
        except (ValueError, SyntaxError):
            return None
    else:
        raw = message.encode("utf-8", "surrogateescape")
    parts = raw.split(b"\n")
    if len(parts) < 3 or b"^" not in parts[2]:
        return None
    caret, snippet = parts[2].index(b"^"), parts[1]
    before, after = snippet[:caret], snippet[caret:]
    text = chunk.replace(b"\n", b" ").replace(b"\r", b" ")
    for o in range(min(caret, len(text) + 1)):  # near the chunk's start: padded with spaces
        if before == b" " * (caret - o) + text[:o] and text[o:o + len(after)] == after:
            return o
    found = text.find(before[-30:] + after)
    return None if found < 0 else found + len(before[-30:])


def _reason(message: str) -> str:
    first = message.strip("b'\"").split("\n")[0].split("\\n")[0]
    first = re.sub(r"^(parse|lexical) error: ", "", first).rstrip(".")
    return _REASONS.get(first, first)


class _Feed:
    """What yajl reads from: the file's chunks, each checked for lone surrogates first; keeps the
    chunk being parsed and the line counts, so an error can be placed."""

    def __init__(self, f: SourceFile):
        self.f, self.lines, self.guard = f, _Lines(), _SurrogateGuard()
        self.chunk, self.skipped, self.started = b"", 0, False

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson asks once whether this is a byte stream
            return b""
        if self.chunk:
            self.lines.advance(self.chunk)
        chunk = self.chunk = self.f.stream.read(CHUNK if size < 0 else size)
        bad = self.guard.feed(chunk) if chunk else self.guard.finish()
        if bad is not None:
            raise self.error(bad, "a \\u escape of a lone UTF-16 surrogate (not a character)")
        self.skipped = len(BOM) if self.lines.start == 0 and chunk.startswith(BOM) else 0
        if not self.started:
            body = chunk[self.skipped:].lstrip(b" \t\r\n")
            if body and not body.startswith(b"["):
                raise InputError(self.f.field, f"{self.f.path}: expected a JSON list of LLaVA records")
            if not chunk:
                raise InputError(self.f.field, f"{self.f.path}: expected a JSON list of LLaVA records, found no JSON")
            self.started = bool(body)
        return chunk[self.skipped:]

    def error(self, offset: int, reason: str) -> InputError:
        line, column = self.lines.at(self.chunk, offset)
        return InputError(self.f.field, f"invalid JSON at byte {offset} (line {line}, column {column}): {reason}",
                          location=str(self.f.path))

    def parse_error(self, message: str) -> InputError:
        """yajl's error, placed in the chunk it was parsing (or at the end, when the file ended early)."""
        at = _yajl_offset(message, self.chunk[self.skipped:]) if self.chunk else None
        offset = self.lines.start + (self.skipped + at if at is not None else len(self.chunk))
        return self.error(offset, _reason(message))


def iter_json_list(f: SourceFile) -> Iterator[object]:
    """The elements of the JSON list in `f`, in order, as Python values (numbers as int or float)."""
    import ijson

    feed = _Feed(f)
    records = ijson.items(feed, "item", buf_size=CHUNK, use_float=True)
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except ijson.JSONError as e:
            raise feed.parse_error(str(e)) from None
        except UnicodeDecodeError as e:  # what yajl makes of a lone low surrogate: the guard reports it first
            raise feed.error(feed.lines.start, f"not UTF-8 ({e.reason})") from None
        yield record
