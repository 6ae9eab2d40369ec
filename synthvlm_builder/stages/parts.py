"""The bases of the image-side components (registry.py): image scores (stages/scores/), image screens
(stages/screens/) and generator backends (stages/generators/). Light to import: `validate` and `plan`
read what the components declare without loading torch; their work imports what it needs.

A score or a screen declares the columns it adds to every candidate (stages/rows.py Column: the shard
schema, the dataset's Features, the card and selection follow), the thresholds it offers in `select`
(`min_<column>`/`max_<column>`, with their schema), and `load(cfg, context)`: the object whose
`score(batch)` gives its columns for a batch of published images (stages/scoring.py BatchScorer runs
them in order, each seeing the columns of those before it). A screen also says which candidates it
drops: `limits(cfg)`, bounds on its columns, and `keep(cfg, candidates, alive)`, a decision over the
whole build (near-duplicates). A generator backend turns captions and seeds into images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from ..registry import Component


@dataclass(frozen=True)
class Column:
    """A column of every candidate (and of the dataset's rows, when published): stages/rows.py."""
    name: str
    kind: str                # string | int32 | int64 | float32 | binary | image | conversations
    doc: str
    candidate: bool = True   # stored in the candidate shards (DIR/.synthvlm/builds/KEY/shards)
    published: bool = True   # a column of the dataset consumers load
    score: bool = False      # a score: summarised and plotted in the card
    selection: bool = False  # read by selection (a few bytes per candidate, never an image)


class ImageScore(Component):
    kind = "score"
    thresholds: ClassVar[dict] = {}   # select field (min_<column> / max_<column>) -> its JSON Schema

    @classmethod
    def columns(cls, cfg) -> list:
        return []

    @classmethod
    def load(cls, cfg, context) -> Any:
        """The scorer of a build: an object with `score(batch) -> {column: values}` (stages/scoring.py)."""
        raise NotImplementedError

    @classmethod
    def preflight(cls, cfg) -> None:
        """Before the output dir is touched: what its models need beyond being available (their
        availability is checked from `models`)."""


class ImageScreen(ImageScore):
    kind = "screen"

    @classmethod
    def limits(cls, cfg) -> list[tuple[str, str, float]]:
        """(column, "<=" or ">=", bound): candidates outside are dropped before best-of-k."""
        return []

    @classmethod
    def keep(cls, cfg, candidates, alive) -> Optional[Any]:
        """A bool mask over `candidates` (stages/select.py Candidates) keeping some of those `alive`,
        for a decision over the whole build; None when the screen has none."""
        return None

    @classmethod
    def step_name(cls, cfg) -> str:
        """How selection's funnel names its whole-build step."""
        return cls.name


class GeneratorBackend(Component):
    kind = "generator"
    schema = None   # its settings are generate's own fields (core.schema.json)

    @classmethod
    def load(cls, generate, device, pipe=None) -> Any:
        """The generator of a build: an object with `generate_tensor(prompts, seeds)`, uint8 N x H x W x 3
        images on the device (models/generator.py ImageGenerator is the diffusers one)."""
        raise NotImplementedError
