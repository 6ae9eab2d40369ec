"""Components and their registries: every extension of the pipeline is one class in one module.

A component declares everything about itself in its class (Data-Juicer's one-op-one-class, without
`**kwargs` configs): the name a recipe uses, the JSON Schema of its recipe value, the typed config that
value becomes, its place in its stage (`order`, cheapest first), what it adds to the data fingerprint,
the models it loads, and, by kind, the funnel rows, columns, thresholds and cache keys it owns. The
schema in schemas/, `validate`, `plan`, preflight, the content identity, the lock, the card, the funnel,
the row schema and selection all read the registry; nothing else keeps a list of components.

Where components come from (STYLE.md: entry points as pytest and fsspec use them):
- built in: every module of the package KINDS names for its kind (adding a module adds a component);
- plugins: modules (or lists of classes) that installed distributions declare under the entry-point
  group `synthvlm_builder.plugins`. A plugin that fails to import, or that reuses a built-in name, is
  reported by name (`Registry.failures`) and left out instead of crashing every command.

The registry is built once per set of installed distributions (`registry()`), sorted by kind and
name, so import order cannot change it.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
import sys
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Optional

GROUP = "synthvlm_builder.plugins"

# kind -> the package whose every module holds built-in components of that kind
KINDS: dict[str, str] = {
    "source": "synthvlm_builder.curation.sources",
    "caption_step": "synthvlm_builder.curation.steps",
    "score": "synthvlm_builder.stages.scores",
    "screen": "synthvlm_builder.stages.screens",
    "generator": "synthvlm_builder.stages.generators",
    "executor": "synthvlm_builder.execution.executors",
    "exporter": "synthvlm_builder.release.exporters",
}


@dataclass(frozen=True)
class Origin:
    """Where a component comes from: built in (distribution None) or a plugin distribution."""
    module: str
    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.distribution is None

    def describe(self) -> str:
        return "built in" if self.builtin else f"{self.distribution} {self.version}"


class Component:
    """The one optional base of every component; each kind has a subclass naming its `kind`."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""                  # how a recipe (or the CLI, for exporters) names it
    summary: ClassVar[str] = ""               # one line: the recipe reference, `plugins`, error messages
    schema: ClassVar[dict] = {}               # JSON Schema of its recipe value
    Config: ClassVar[type | None] = None      # the frozen dataclass its value becomes; None: the plain value
    order: ClassVar[float] = 500.0            # place in its stage: cheaper (or earlier) first
    # Fields that change where or how it runs but never its output (kept out of the fingerprint).
    operational: ClassVar[tuple[str, ...]] = ()
    # Components whose recipes were published before the registry keep their fingerprints
    # (tests/golden/fingerprints.json): "null" ones count with their whole value, defaults included, and
    # as a null when unused; "later" ones (added later) with their whole value, but only when used.
    # Both read as null in the resolved recipe (the lock) when unused. `later` names fields added to
    # them since, which count only when set to something else. Any other component (None: every plugin,
    # every new built-in) counts only with what a recipe sets to something else than its default, so
    # adding one never changes an existing recipe's fingerprint (execution/plan.py data_view).
    legacy: ClassVar[Optional[str]] = None
    later: ClassVar[dict] = {}
    # Keys it owns beside its own, in the mapping that holds it (max_tokens owns filters.truncate): name ->
    # JSON Schema; they follow it in the schema and the resolved recipe.
    siblings: ClassVar[dict] = {}
    required: ClassVar[bool] = False          # every recipe sets it (score.clip)
    origin: ClassVar[Origin] = Origin("synthvlm_builder")  # set by the registry

    @classmethod
    def check(cls, c, value: Any, at: tuple, data: dict) -> None:
        """Semantic checks JSON Schema cannot express, reported located (c: recipe/checks.py Collector);
        `value` is its recipe value (defaults filled), `at` its path, `data` the whole recipe."""

    @classmethod
    def models(cls, value: Any, at: tuple) -> list:
        """The models it loads (models/uses.py ModelUse), read from its plain recipe value: they are
        checked, resolved against the recipe file, preflighted, digested into the content identity and
        named in the lock and the card."""
        return []

    @classmethod
    def config(cls, value: Any) -> Any:
        """The typed form of a validated (defaults filled) recipe value."""
        if cls.Config is None or value is None or isinstance(value, cls.Config):
            return value
        return build_dataclass(cls.Config, value)


# --- typed configs ---------------------------------------------------------------------------------

def build_dataclass(cls: type, value: dict) -> Any:
    """Frozen dataclass `cls` from validated plain data (lists become tuples, nested dataclasses built)."""
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    kwargs = {f.name: _coerce(hints[f.name], value[f.name]) for f in dataclasses.fields(cls) if f.name in value}
    return cls(**kwargs)


def _coerce(hint, value):
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union:
        return _coerce(args[0], value) if len(args) == 1 else value
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value)
    if typing.get_origin(hint) is tuple:
        inner = args[0] if args else object
        return tuple(_coerce(inner, v) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# --- the registry ----------------------------------------------------------------------------------

class UnknownComponent(LookupError):
    """A name no installed component has: says which exist, and the closest."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        hint = difflib.get_close_matches(name, known, n=1)
        super().__init__(f"unknown {kind.replace('_', ' ')} {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                         + f" (installed: {', '.join(known) or 'none'})")


@dataclass(frozen=True)
class Registry:
    components: dict[str, dict[str, type]]      # kind -> name -> class, each sorted by (order, name)
    plugins: dict[str, str]                     # distribution -> version, of every plugin that loaded
    failures: tuple[str, ...] = ()              # plugins (or components) left out, and why

    def all(self, kind: str) -> list[type]:
        return list(self.components[kind].values())

    def names(self, kind: str) -> list[str]:
        return list(self.components[kind])

    def get(self, kind: str, name: str) -> type:
        try:
            return self.components[kind][name]
        except KeyError:
            raise UnknownComponent(kind, name, self.names(kind)) from None

    def find(self, kind: str, name: str) -> type | None:
        return self.components[kind].get(name)


def components_in(module) -> list[type]:
    """The component classes a module defines (not those it imports, nor the kinds' bases)."""
    found = []
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Component) and obj.kind and obj.name \
                and obj.__module__ == module.__name__:
            found.append(obj)
    return found


def _builtin_modules(package: str):
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package}.{info.name}")


def _plugin_components(failures: list[str], plugins: dict[str, str]) -> list[tuple[type, Origin]]:
    from importlib.metadata import entry_points

    out = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name)):
        dist, version = (ep.dist.name, ep.dist.version) if ep.dist else (ep.name, None)
        try:
            loaded = ep.load()
        except Exception as e:  # a broken plugin must not take every command down with it
            failures.append(f"plugin {dist} ({ep.value}) failed to import: {type(e).__name__}: {e}")
            continue
        if isinstance(loaded, type):
            classes = [loaded]
        elif isinstance(loaded, (list, tuple)):
            classes = list(loaded)
        else:
            classes = components_in(loaded)
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Component) and cls.kind in KINDS and cls.name):
                failures.append(f"plugin {dist} ({ep.value}): {cls!r} is not a component")
                continue
            out.append((cls, Origin(cls.__module__, dist, version)))
        plugins[dist] = version
    return out


@lru_cache(maxsize=4)
def _registry(path_key: tuple[str, ...], plugins_too: bool = True) -> Registry:
    failures: list[str] = []
    plugins: dict[str, str] = {}
    found: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
    for kind, package in KINDS.items():
        for module in _builtin_modules(package):
            for cls in components_in(module):
                found[cls.kind][cls.name] = cls
    for cls, origin in _plugin_components(failures, plugins) if plugins_too else ():
        if cls.name in found[cls.kind]:
            owner = found[cls.kind][cls.name].origin.describe()
            failures.append(f"plugin {origin.distribution}: {cls.kind.replace('_', ' ')} {cls.name!r} is already"
                            f" defined ({owner}); left out")
            continue
        cls.origin = origin
        found[cls.kind][cls.name] = cls
    ordered = {kind: dict(sorted(comps.items(), key=lambda kv: (kv[1].order, kv[0]))) for kind, comps in found.items()}
    return Registry(ordered, dict(sorted(plugins.items())), tuple(failures))


def builtin_registry() -> Registry:
    """The components synthvlm-builder ships, whatever plugins are installed (schemas/recipe.schema.json)."""
    return _registry((), plugins_too=False)


def registry() -> Registry:
    """The components installed now. Distributions are found on sys.path, so a change of sys.path (a
    plugin installed into a scratch dir at run time, in tests) gives a fresh registry."""
    return _registry(tuple(sys.path))


def refresh() -> None:
    """Find the components again (a plugin installed into this process's sys.path since it started)."""
    _registry.cache_clear()
    importlib.invalidate_caches()
