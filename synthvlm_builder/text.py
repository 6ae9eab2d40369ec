"""Showing text that came from a recipe or from data: on a terminal and in Markdown.

Recipe values, caption ids and captions are untrusted. Printed raw, an escape sequence in a caption
retitles the terminal or rewrites lines above it; put raw into a pull-request comment, a backtick or
`<img>` in a description ends a code span and renders live. Everything shown from a recipe or from
data goes through one of these functions:

- `printable(s)`: one terminal line. C0/C1 control characters (ESC, CR, LF, ...), DEL, the Unicode
  line/paragraph separators and bidirectional overrides, and lone surrogates become visible escapes
  (`\\x1b`, `\\n`, `\\u202e`, `\\ud800`); everything else, non-ASCII letters included, is kept.
- `md_code(s)`: an inline code span that nothing inside can close: fenced with one more backtick than
  the longest run inside, padded when the text starts or ends with a backtick or space, control
  characters escaped as for the terminal (a newline would end a table row), and `|` escaped so a
  table cell stays one cell (GFM unescapes `\\|` inside code spans in tables; `table=False` outside one).
- `md_fence(s, info)`: a fenced code block holding `s` verbatim, fenced with more backticks than any
  run inside, so no line of `s` can close it early.
- `md_text(s)`: plain text in Markdown, one line: every character that could start Markdown or HTML
  syntax is backslash-escaped (and a list, quote or setext marker at the start of the line), so no
  value becomes a heading, emphasis, a link, a tag, a mention or a list; other punctuation stays as
  it is, so messages stay readable in the raw comment.
"""
from __future__ import annotations

import re

# Bidirectional embeddings, overrides and isolates: they reorder what a reader sees ("Trojan Source").
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029" + _BIDI + "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(m: re.Match) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """`value` as text safe to write to a terminal on one line (see the module docstring)."""
    return _UNSAFE.sub(_escape_char, str(value))


def has_unsafe(value: str) -> bool:
    """True when `value` holds a character `printable` would escape."""
    return find_unsafe(value) is not None


def find_unsafe(value: str) -> re.Match | None:
    """The first character of `value` that `printable` would escape (its match), or None."""
    return _UNSAFE.search(value)


def md_code(value: object, table: bool = True) -> str:
    """`value` as an inline Markdown code span that its content cannot close or break out of. With
    table=False (a span outside any table, where GFM would show the backslash) `|` is left as it is."""
    text = printable(value)
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith(("`", " ")) or text.endswith(("`", " ")) or not text:
        text = f" {text} "
    return f"{fence}{text}{fence}"


def md_fence(text: str, info: str = "") -> str:
    """`text` as a fenced code block (its lines verbatim) that no line of it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


# Characters that start Markdown or HTML syntax anywhere in a line: escapes, code, emphasis, links and
# images (`[`), HTML tags and autolinks (`<`), entities, strikethrough, table cells, issue references,
# mentions and math. `!`, `(`, `>` and the rest only mean something after one of these, or at the
# start of a line (_MD_LINE_START: headings are already covered by `#`).
_MD_INLINE = re.compile(r"([\\`*_\[\]<&~|#@$])")
_MD_LINE_START = re.compile(r"^( *)([-+=>]|\d+[.)](?= |$))")  # "1. " starts a list, "0.1.0" does not


def md_text(value: object) -> str:
    """`value` as Markdown text that renders literally (no HTML, heading, list, emphasis or link)."""
    text = _MD_INLINE.sub(r"\\\1", printable(value))
    return _MD_LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)
