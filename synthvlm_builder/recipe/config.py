"""The typed, frozen form of a recipe.

recipe/loader.py turns YAML into these objects after schema validation, with the schema's defaults
filled in, presets applied and relative paths resolved. Every stage reads these objects; nothing
downstream reads raw dicts.

The recipe's core fields are dataclasses here. Where components plug in (captions.filters, score,
screen, select's thresholds, execution's executor options) a `Section` holds them: name -> the
component's own typed config (declared in its module, registry.py), in the schema's order, read by
attribute (`recipe.score.clip`, `recipe.captions.filters.max_tokens`); an installed component the
recipe does not use reads as None.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

# Field metadata: `omit_default` fields appear in the resolved recipe (the lock, `plan --json`, the
# fingerprint) only when set to something else than their default: fields added after releases were
# published, so that those releases' locks and fingerprints stay what they are (recipe/typed.py).
NEW = {"omit_default": True}


class Section(Mapping):
    """A frozen mapping of a recipe section's keys to their typed values, read by attribute too.

    `known(name)` says whether a name the recipe leaves out is still a valid one (an installed
    component, or a threshold one offers): it then reads as None instead of raising AttributeError."""

    __slots__ = ("_items", "_known", "kind")

    def __init__(self, kind: str, items: Mapping | None = None, known: Optional[Callable[[str], bool]] = None):
        object.__setattr__(self, "_items", dict(items or {}))
        object.__setattr__(self, "_known", known)
        object.__setattr__(self, "kind", kind)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name: str) -> Any:
        items = object.__getattribute__(self, "_items")
        if name in items:
            return items[name]
        known = object.__getattribute__(self, "_known")
        if not name.startswith("_") and known is not None and known(name):
            return None
        raise AttributeError(f"{object.__getattribute__(self, 'kind')} has no {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("a recipe section is frozen")

    def __reduce__(self):
        # Pickled as the call that makes it: the default restores slots by setattr, which a section refuses.
        return (Section, (self.kind, self._items, self._known))

    def __eq__(self, other) -> bool:
        return isinstance(other, Section) and self.kind == other.kind and self._items == other._items

    def __hash__(self) -> int:
        return hash((self.kind, repr(sorted(self._items.items(), key=lambda kv: kv[0]))))

    def __repr__(self) -> str:
        return f"Section({self.kind!r}, {self._items!r})"

    def replace(self, **changes) -> "Section":
        return Section(self.kind, {**self._items, **changes}, self._known)


@dataclass(frozen=True)
class SourceConfig:
    type: str                    # a caption source's name (registry kind "source")
    path: str                    # absolute local path, hf:// URL, or (hf_dataset) a Hub dataset id
    name: str                    # unique per recipe; caption ids are "<name>:<row id>"
    limit: Optional[int] = None  # read at most this many captions from this source
    column: str = "caption"      # caption column (jsonl, csv, parquet, hf_dataset)
    id_column: Optional[str] = None  # row id column; default: the row index
    config: Optional[str] = None     # hf_dataset config name
    split: str = "train"             # hf_dataset split
    revision: Optional[str] = None   # hf_dataset / hf:// revision
    sha256: Optional[str] = None     # local file sources: the pinned content digest
    duplicate_ids: str = "error"     # error | drop
    images: Optional[str] = None       # llava_json: the folder the records' `image` paths are relative to
    image_column: Optional[str] = None  # hf_dataset: the column holding each caption's original image
    # A plugin source's own keys (its schema's properties): beside the shared ones in the resolved recipe.
    options: Section = field(default=Section("source options"), metadata={"flatten": True})

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


def _no_filters() -> Section:
    from .typed import filters_section
    return filters_section()


@dataclass(frozen=True)
class CaptionsConfig:
    sources: tuple[SourceConfig, ...]
    filters: Section = field(default_factory=_no_filters)  # preset, segmentation and the caption steps


@dataclass(frozen=True)
class StopRule:
    """Adaptive best-of-k's stopping rule: a caption gets no more candidates once its best one's
    combined score reaches `min_score` (execution/rounds.py)."""
    min_score: float


@dataclass(frozen=True)
class AdaptiveK:
    """Adaptive best-of-k (`images_per_caption: {max, until}`): at most `max` candidates per caption, made
    in rounds until one meets `until`."""
    max: int
    until: StopRule


@dataclass(frozen=True)
class GenerateConfig:
    model: str                   # hub id, absolute local dir, or builtin:<name>
    revision: Optional[str] = None
    variant: Optional[str] = None
    steps: int = 30
    guidance_scale: float = 7.5
    resolution: tuple[int, int] = (1024, 1024)   # (width, height)
    images_per_caption: Union[int, AdaptiveK] = 1  # candidates per caption; read `max_candidates` for the count
    batch_size: Union[int, str] = 4   # an integer, or "auto" (measured before the first shard)
    dtype: str = "float16"
    negative_prompt: str = ""
    scheduler: Optional[str] = None
    compile: bool = False
    backend: str = field(default="diffusers", metadata=NEW)  # a generator backend (registry kind "generator")

    @property
    def adaptive(self) -> bool:
        return isinstance(self.images_per_caption, AdaptiveK)

    @property
    def max_candidates(self) -> int:
        """Candidates per caption: fixed k, or adaptive best-of-k's bound."""
        ipc = self.images_per_caption
        return ipc.max if isinstance(ipc, AdaptiveK) else ipc

    @property
    def until(self) -> Optional[StopRule]:
        """Adaptive best-of-k's stopping rule; None for fixed k."""
        return self.images_per_caption.until if self.adaptive else None

    @property
    def per_caption_text(self) -> str:
        """Candidates per caption in words (`plan`, the preview page)."""
        if self.adaptive:
            return f"up to {self.max_candidates} per caption until score >= {self.until.min_score}"
        return f"{self.images_per_caption} per caption"


@dataclass(frozen=True)
class FormatConfig:
    style: str = "llava_pretrain"
    image_format: str = "jpeg"   # jpeg | png | webp
    quality: int = 95
    prompts: Optional[tuple[str, ...]] = None


@dataclass(frozen=True)
class OutputConfig:
    dir: Optional[str] = None    # absolute; None means build/<name>-v<version> under the cwd


@dataclass(frozen=True)
class PublishConfig:
    repo_id: Optional[str] = None
    private: bool = True


@dataclass(frozen=True)
class CostsConfig:
    """Prices for the cost ledger (execution/ledger.py); None: no price, no money shown for it."""
    currency: str = "USD"
    device_hour: Optional[float] = None
    prompt_tokens_per_million: Optional[float] = None
    completion_tokens_per_million: Optional[float] = None
    per_request: Optional[float] = None


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    captions: CaptionsConfig
    generate: GenerateConfig
    score: Section                # the image scores (registry kind "score"): clip, ssim, ...
    select: Section               # size, per_caption, the scores' thresholds, allow_fewer
    description: str = ""
    license: str = "other"
    seed: int = 0
    screen: Section = Section("screen")      # the image screens (registry kind "screen")
    format: FormatConfig = FormatConfig()
    output: OutputConfig = OutputConfig()
    publish: PublishConfig = PublishConfig()
    execution: Section = Section("execution")  # executor, shard_size, device and each executor's options
    plugins: tuple[str, ...] = field(default=(), metadata=NEW)  # plugin distributions the recipe needs
    costs: Optional[CostsConfig] = field(default=None, metadata=NEW)  # the ledger's prices (no data)
    # Not recipe fields: where it came from (to locate errors and copy it verbatim),
    # and the folder its relative paths resolve against.
    path: Optional[Path] = None
    base: Optional[Path] = None
    text: str = ""

    @property
    def output_dir(self) -> Path:
        return Path(self.output.dir) if self.output.dir else Path("build") / f"{self.name}-v{self.version}"

    # The Python API (README "Python API"); errors are RecipeError with every problem located.
    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "Recipe":
        """The recipe in a YAML file, validated as `synthvlm-build validate` does."""
        from .loader import load_recipe
        return load_recipe(path)

    @classmethod
    def from_dict(cls, data: dict, base_dir: Union[str, Path, None] = None) -> "Recipe":
        """A recipe from plain data, validated exactly as a YAML file (recipe/plain.py); relative paths
        resolve against `base_dir` (default: the current dir)."""
        from .plain import recipe_from_data
        return recipe_from_data(data, base_dir)

    # `recipe.as_builder(**options)`, the recipe as a `datasets` builder, is api.py's `as_builder`, attached
    # to this class there: the builder runs the build, which this layer must not import (docs/ARCHITECTURE.md
    # "Layers"), and the package imports api.py before anything can hold a Recipe.


@dataclass(frozen=True)
class Caption:
    id: str       # "<source name>:<row id or index>", stable across runs
    text: str
    source: str   # the source's name
    # The caption's original image, while curation needs it (never written out): an absolute file
    # path (llava_json + images), the encoded bytes (hf_dataset + image_column), or MISSING_IMAGE
    # when the source has images but this row names none.
    image: object = field(default=None, compare=False, repr=False)


MISSING_IMAGE = ""
