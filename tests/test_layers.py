"""The package's layering holds (docs/ARCHITECTURE.md "Layers"): every import, at module level or inside a
function, goes to the importer's own layer or one below it, and no module uses another module's private
(underscore) names. The order is read from the document itself, so the document and this test cannot
disagree. Imports by string (the registry's importlib.import_module of component packages and plugins)
are not imports of a module the importer depends on, and are not seen here."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "synthvlm_builder"
SOURCE = ROOT / PACKAGE
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def layers() -> list[tuple[str, list[str]]]:
    """(layer, entries) from the top layer down, as the "Layers" section's block lists them: a line is
    LAYER ENTRY..., an indented line more entries of the layer above it; an entry is a module's path in the
    package (`cli.py`, `execution/runner.py`) or a folder (`release/`: every module in it)."""
    text = ARCHITECTURE.read_text()
    match = re.search(r"^## Layers\n.*?^```text\n(.*?)^```", text, re.S | re.M)
    assert match, f"{ARCHITECTURE}: no ```text block under '## Layers'"
    order: list[tuple[str, list[str]]] = []
    for line in match.group(1).splitlines():
        if not line.strip():
            continue
        words = line.split()
        if line[0].isspace():
            assert order, f"an indented line continues a layer, and none is above it: {line!r}"
            order[-1][1].extend(words)
        else:
            assert len(words) >= 2, f"a line of the block is LAYER ENTRY...: {line!r}"
            order.append((words[0], words[1:]))
    return order


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def layer_of(path: Path, order: list[tuple[str, list[str]]]) -> tuple[int, str] | None:
    """(rank, layer) of a module file, rank 0 being the bottom; the longest matching entry decides."""
    rel = path.relative_to(SOURCE).as_posix()
    best = None
    for rank, (name, entries) in enumerate(reversed(order)):
        for entry in entries:
            hit = rel == entry if entry.endswith(".py") else rel.startswith(entry.rstrip("/") + "/")
            if hit and (best is None or len(entry) > best[0]):
                best = (len(entry), rank, name)
    return best and best[1:]


@dataclass(frozen=True)
class Use:
    line: int
    target: str  # the dotted module imported
    name: str | None  # the name imported from it (None: the module itself)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (`from ..x import y` in module a.b.c -> a.x)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def uses(module: str, is_package: bool, tree: ast.AST) -> tuple[list[Use], dict[str, str]]:
    """Every import of a package module in `module` (anywhere in it, functions included), and the local
    names bound to a package module (for `name._private` uses)."""
    found, bound = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found.append(Use(node.lineno, alias.name, None))
                    bound[alias.asname or PACKAGE] = alias.name if alias.asname else PACKAGE
        elif isinstance(node, ast.ImportFrom):
            source = resolve(module, is_package, node)
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:  # `from . import card`: the module card itself
                    found.append(Use(node.lineno, submodule, None))
                    bound[alias.asname or alias.name] = submodule
                else:
                    found.append(Use(node.lineno, source, alias.name))
    return found, bound


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def attribute_uses(tree: ast.AST, bound: dict[str, str]) -> list[tuple[int, str, str]]:
    """(line, module, name) of each `module._name`, `module` being a package module an import bound
    (through submodules: `synthvlm_builder.models.shapes.world._draw`)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, value = [node.attr], node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if not (isinstance(value, ast.Name) and value.id in bound):
            continue
        target = bound[value.id]
        for attr in chain[:-1]:  # down the submodules the chain names
            if f"{target}.{attr}" not in MODULES:
                break
            target = f"{target}.{attr}"
        else:  # every Attribute of a chain is visited: report only the one right after the last module
            if private(node.attr):
                found.append((node.lineno, target, node.attr))
    return found


def parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), str(path))


def shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_layers_block_names_every_module():
    order = layers()
    names = [name for name, _ in order]
    assert len(set(names)) == len(names), f"a layer is listed twice: {names}"
    entries = [e for _, row in order for e in row]
    assert len(set(entries)) == len(entries), "an entry is listed twice"
    assert all(e.endswith((".py", "/")) for e in entries), "entries are modules (x.py) or folders (x/)"
    missing = [shown(p) for p in MODULES.values() if layer_of(p, order) is None]
    assert not missing, f"modules in no layer of {ARCHITECTURE.name} '## Layers': {missing}"


def upward(order) -> list[str]:
    wrong = []
    for module, path in MODULES.items():
        here = layer_of(path, order)
        for use in uses(module, path.name == "__init__.py", parsed(path))[0]:
            assert use.target in MODULES, f"{shown(path)}:{use.line}: {use.target} is not a module of the package"
            there = layer_of(MODULES[use.target], order)
            if there[0] > here[0]:
                what = f"{use.target}.{use.name}" if use.name else use.target
                wrong.append(f"{shown(path)}:{use.line}: {module} ({here[1]}) imports {what} ({there[1]})")
    return wrong


def test_every_import_goes_down():
    wrong = upward(layers())
    assert not wrong, "imports from a higher layer (docs/ARCHITECTURE.md '## Layers'):\n" + "\n".join(wrong)


def crossing(module: str, is_package: bool, tree: ast.AST) -> list[str]:
    """Private names `module` takes from another module of the package, as `line: what`."""
    found, bound = uses(module, is_package, tree)
    return ([f"{u.line}: imports {u.name} from {u.target}" for u in found if u.name and private(u.name)]
            + [f"{line}: uses {target}.{name}" for line, target, name in attribute_uses(tree, bound)
               if target != module])


def test_no_private_name_crosses_modules():
    wrong = [f"{shown(path)}:{line}" for module, path in MODULES.items()
             for line in crossing(module, path.name == "__init__.py", parsed(path))]
    assert not wrong, "private names used across modules (make them public, or keep them in one module):\n" + \
        "\n".join(wrong)


def test_the_checks_see_what_they_must():
    """The checks themselves, on code that breaks both rules in every way they know: relative imports at
    each level, imports inside functions, `import a.b.c`, aliases, and private names through a module."""
    code = ast.parse("from ..models import loading\n"
                     "from ..models.shapes import world as w\n"
                     "from .card import render, _private\n"
                     "def f():\n"
                     "    from .. import cli\n"
                     "    import synthvlm_builder.models.shapes.world\n"
                     "    import synthvlm_builder.stages.select as sel\n"
                     "    from .. import __version__\n"
                     "    return w._draw, synthvlm_builder.models.shapes.world._SUPERSAMPLE, sel._x, w.__file__\n")
    module = f"{PACKAGE}.release.lock"
    found, _ = uses(module, False, code)
    assert [(u.line, u.target, u.name) for u in found] == [
        (1, f"{PACKAGE}.models.loading", None), (2, f"{PACKAGE}.models.shapes.world", None),
        (3, f"{PACKAGE}.release.card", "render"), (3, f"{PACKAGE}.release.card", "_private"),
        (5, f"{PACKAGE}.cli", None), (6, f"{PACKAGE}.models.shapes.world", None),
        (7, f"{PACKAGE}.stages.select", None), (8, PACKAGE, "__version__")]
    assert crossing(module, False, code) == [
        f"3: imports _private from {PACKAGE}.release.card", f"9: uses {PACKAGE}.models.shapes.world._draw",
        f"9: uses {PACKAGE}.models.shapes.world._SUPERSAMPLE", f"9: uses {PACKAGE}.stages.select._x"]
    order = layers()
    ranks = {name: rank for rank, (name, _) in enumerate(reversed(order))}
    assert layer_of(MODULES[module], order)[0] < layer_of(MODULES[f"{PACKAGE}.cli"], order)[0] == max(ranks.values())
