"""A strict YAML reader that remembers where every value came from.

Recipes are reviewed in pull requests and run on GPU clusters, so the reader
accepts only plain data: the YAML 1.2 core schema (no `yes`/`no` booleans, no
timestamps), no `!!python/...` or other non-core tags, no merge keys, no
duplicate keys, at most MAX_ALIASES aliases and MAX_NODES expanded nodes (an
alias bomb cannot blow up), exactly one document, and a mapping at the root.
Nodes are composed, never constructed by PyYAML, so no tag can run code.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.parser import Parser
import yaml.reader
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

MAX_BYTES = 1 << 20
MAX_ALIASES = 100
MAX_NODES = 100_000
MAX_DEPTH = 32  # a recipe nests 4 levels; deep nesting is only ever an attack (or a RecursionError)

TAG = "tag:yaml.org,2002:"
CORE_TAGS = {TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}

Path = tuple  # a path into the document: keys and list indices


def dotted(path: Path) -> str:
    """('captions', 'sources', 0, 'path') -> 'captions.sources[0].path'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


class YamlProblem(Exception):
    def __init__(self, line: int, col: int, path: Path, message: str):
        super().__init__(message)
        self.line, self.col, self.path, self.message = line, col, path, message


class _CoreResolver(BaseResolver):
    """YAML 1.2 core schema resolution for plain scalars."""


for _tag, _regexp, _first in [
    ("null", r"^(?:~|null|Null|NULL|)$", list("~nN") + [""]),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+.0123456789")),
]:
    _CoreResolver.add_implicit_resolver(TAG + _tag, re.compile(_regexp), _first)


class _Loader(Reader, Scanner, Parser, Composer, _CoreResolver):
    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _CoreResolver.__init__(self)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlProblem(mark.line + 1, mark.column + 1, (),
                                  f"more than {MAX_ALIASES} aliases; refusing a possible alias bomb")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlProblem(mark.line + 1, mark.column + 1, (),
                                  f"nested more than {MAX_DEPTH} levels deep; a recipe is a few levels of fields")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


@dataclass
class Document:
    """Plain data plus the (line, col) of every value and every mapping key."""
    data: dict
    positions: dict = field(default_factory=dict)      # path -> (line, col) of the value
    key_positions: dict = field(default_factory=dict)  # path -> (line, col) of the key

    def locate(self, path: Path, key: bool = False) -> tuple[int, int]:
        """Position of the value at `path` (or of its key, with key=True); for a
        path that does not exist, the key of its deepest existing ancestor."""
        path = tuple(path)
        if not key and path in self.positions:
            return self.positions[path]
        while path:
            if path in self.key_positions:
                return self.key_positions[path]
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))


def _pos(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _scalar(node: ScalarNode, path: Path):
    tag, value = node.tag, node.value
    try:
        if tag == TAG + "str":
            return value
        if tag == TAG + "null":
            return None
        if tag == TAG + "bool":
            if value.lower() not in ("true", "false"):
                raise ValueError
            return value.lower() == "true"
        if tag == TAG + "int":
            if value.startswith(("0o", "0x")):
                return int(value[2:], 8 if value[1] == "o" else 16)
            return int(value)
        if tag == TAG + "float":
            number = float(value.lower().replace(".inf", "inf").replace(".nan", "nan"))
            if not math.isfinite(number):
                raise YamlProblem(*_pos(node), path, f"{value} is not a finite number; every number in a recipe"
                                  " must be finite (quote it if you mean text)")
            return number
    except ValueError:
        pass
    raise YamlProblem(*_pos(node), path, f"cannot read {value!r} as {tag.replace(TAG, '!!')}")


def _convert(node, path: Path, doc: Document, budget: list) -> object:
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlProblem(*_pos(node), path, f"document expands to more than {MAX_NODES} nodes")
    if node.tag not in CORE_TAGS:
        raise YamlProblem(*_pos(node), path,
                          f"tag {node.tag.replace(TAG, '!!')} is not allowed; recipes hold plain data only")
    doc.positions[path] = _pos(node)
    if isinstance(node, ScalarNode):
        return _scalar(node, path)
    if isinstance(node, SequenceNode):
        return [_convert(item, path + (i,), doc, budget) for i, item in enumerate(node.value)]
    assert isinstance(node, MappingNode)
    out: dict = {}
    for key_node, value_node in node.value:
        key = _convert(key_node, path + ("<key>",), doc, budget) if key_node.tag in CORE_TAGS else None
        if not isinstance(key, str):
            raise YamlProblem(*_pos(key_node), path, f"mapping keys must be strings, got {key_node.value!r}")
        if key == "<<":
            raise YamlProblem(*_pos(key_node), path, "merge keys (<<) are not supported")
        if key in out:
            first = doc.key_positions[path + (key,)]
            raise YamlProblem(*_pos(key_node), path + (key,),
                              f"duplicate key {key!r} (first defined at line {first[0]})")
        doc.key_positions[path + (key,)] = _pos(key_node)
        out[key] = _convert(value_node, path + (key,), doc, budget)
    doc.positions.pop(path + ("<key>",), None)
    return out


def parse(text: str) -> Document:
    """Parse one recipe document; raise YamlProblem (located) on anything unsafe."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlProblem(1, 1, (), f"file is larger than {MAX_BYTES} bytes; a recipe should be small")
    loader = None
    try:
        loader = _Loader(text)  # the reader checks every character here
        if not loader.check_node():
            raise YamlProblem(1, 1, (), "recipe is empty")
        root = loader.get_node()
        if loader.check_node():
            mark = loader.peek_event().start_mark
            raise YamlProblem(mark.line + 1, mark.column + 1, (),
                              "more than one YAML document; a recipe is a single document")
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, other controls)
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise YamlProblem(line, col, (), f"control character U+{e.character:04X} is not"
                          " allowed; a recipe is plain text") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        context = ""
        if e.context and e.context_mark and e.problem:  # e.g. where an unclosed bracket opened
            context = f" ({e.context} started at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
        raise YamlProblem(line, col, (), f"invalid YAML: {e.problem or e.context}{context}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None or (isinstance(root, ScalarNode) and root.tag == TAG + "null"):
        raise YamlProblem(1, 1, (), "recipe is empty")
    doc = Document(data={})
    data = _convert(root, (), doc, [MAX_NODES])
    if not isinstance(data, dict):
        raise YamlProblem(*_pos(root), (), f"the recipe must be a mapping of fields, got a {type(data).__name__}")
    doc.data = data
    return doc
