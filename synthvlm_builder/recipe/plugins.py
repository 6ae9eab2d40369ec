"""A recipe's plugins: the distributions it lists under `plugins` must be installed and load, and every
component it uses from a plugin must come from one it lists, so a reviewer sees what a recipe needs and
a build on a machine without it stops at `validate` naming the package (exit 2).

Run beside the schema check: a component of a plugin that is not installed is an unknown key to the
schema, and this says why.
"""
from __future__ import annotations

from importlib import metadata

from ..errors import Problem
from ..registry import GROUP, registry
from .components import components_of
from .yamlsafe import Document, dotted


def plugin_problems(doc: Document, file: str) -> list[Problem]:
    data = doc.data if isinstance(doc.data, dict) else {}
    listed = data.get("plugins")
    if not isinstance(listed, list):
        return []
    reg = registry()
    problems = []
    for i, name in enumerate(listed):
        if not isinstance(name, str):
            continue
        why = _unavailable(name, reg)
        if why:
            line, col = doc.locate(("plugins", i))
            problems.append(Problem(file, line, col, f"plugins[{i}]", why))
    return problems


def _unavailable(name: str, reg) -> str | None:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return f"the plugin package {name!r} is not installed: pip install {name}"
    canonical = dist.metadata["Name"]
    failed = [f for f in reg.failures if f.startswith(f"plugin {canonical} ")]
    if failed:
        return failed[0]
    if not any(ep.group == GROUP for ep in dist.entry_points):
        return f"{canonical} {dist.version} is installed but adds no components (no {GROUP!r} entry point)"
    return None


def unlisted_problems(data: dict, doc: Document, file: str) -> list[Problem]:
    """A component from a plugin the recipe does not list under `plugins`."""
    listed = {_normal(n) for n in data.get("plugins") or ()}
    problems = []
    for cls, _, at in components_of(data):
        dist = cls.origin.distribution
        if dist is not None and _normal(dist) not in listed:
            line, col = doc.locate(at)
            problems.append(Problem(file, line, col, dotted(at), f"{cls.kind.replace('_', ' ')} {cls.name!r} comes"
                                    f" from the plugin package {dist} {cls.origin.version}: list it under plugins"
                                    f" ([{dist}]) so the recipe says what it needs"))
    return problems


def _normal(name: str) -> str:
    """PEP 503 normalised distribution name."""
    import re
    return re.sub(r"[-_.]+", "-", name).lower()
