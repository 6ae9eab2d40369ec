"""What characters a recipe's strings may hold.

YAML's double-quoted escapes let a recipe spell any code point: `"\\ud800"` (a lone surrogate, which
no UTF-8 file, fingerprint or card can hold: it crashes the first encoder it meets), `"\\e]0;x\\a"`
(a terminal escape), `"a\\nb"` (a line break in a name or key) or `"\\u202e"` (a bidirectional
override that reorders what a reviewer sees). So, before any semantic check reads them:

- no string, key or value, may hold a lone surrogate;
- a mapping key, and every value that names something (names, versions, ids, paths, model ids,
  columns, revisions), must be one line of visible text: nothing that text.printable escapes;
- free text (the values under TEXT_KEYS: the description and the prompts) may span lines and hold
  tabs, but no other control character. It is shown escaped wherever it is shown (text.py).
"""
from __future__ import annotations

import re
import unicodedata

from ..errors import Problem
from ..text import find_unsafe
from .yamlsafe import Document, dotted

TEXT_KEYS = frozenset({"description", "negative_prompt", "prefix", "prompt", "prompts"})
_TEXT_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # control characters but tab and line feed
_CONTROL_NAMES = {"\t": "tab", "\n": "line feed", "\r": "carriage return", "\x1b": "escape", "\x00": "NUL"}
RULES = {"key": "a key is one line of visible text",
         "name": "a name, id, path or other one-line value holds no control character, line break or"
                 " bidirectional override",
         "text": "free text may span lines and hold tabs, but no other control character"}


def _describe(ch: str) -> str:
    name = _CONTROL_NAMES.get(ch) or unicodedata.name(ch, "").lower() or "a control character"
    return f"U+{ord(ch):04X} ({name})"


def string_problems(doc: Document, file: str) -> list[Problem]:
    """A located problem for every key and string value of the recipe that holds a character it may not."""
    problems: list[Problem] = []

    def check(path: tuple, value: str, kind: str) -> None:
        m = _TEXT_BAD.search(value) if kind == "text" else find_unsafe(value)
        if not m:
            return
        ch, where = m.group(), f"at character {m.start() + 1}"
        if "\ud800" <= ch <= "\udfff":
            message = (f"holds a lone surrogate U+{ord(ch):04X} {where}, which no UTF-8 text can hold; write the"
                       " character itself (or a surrogate pair as one \\UXXXXXXXX escape)")
        else:
            message = f"holds {_describe(ch)} {where}; {RULES[kind]}"
        line, col = doc.locate(path, key=kind == "key")
        problems.append(Problem(file, line, col, dotted(path), ("the key " if kind == "key" else "") + message))

    def walk(value, path: tuple, kind: str) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                check(path + (key,), key, "key")
                walk(sub, path + (key,), "text" if key in TEXT_KEYS else "name")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, path + (i,), kind)
        elif isinstance(value, str):
            check(path, value, kind)

    walk(doc.data, (), "name")
    return problems
