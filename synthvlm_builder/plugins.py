"""What a plugin package builds on: the base of every kind of component and the helpers components use,
in one place, so a plugin imports `synthvlm_builder.plugins` and nothing deeper (examples/plugin/).

A plugin is a distribution whose `pyproject.toml` declares entry points in the group
`synthvlm_builder.plugins`, each naming a module (every component class defined in it is added) or a
list of classes:

    [project.entry-points."synthvlm_builder.plugins"]
    uppercase_ratio = "my_plugin.uppercase"

Once it is installed, a recipe names its components as it names built-in ones, and lists the package
under `plugins:`; `validate` checks their values against their schemas, and the package's name and
version enter the fingerprint, the lock, the card and `plan`. `synthvlm-build validate` on a recipe
whose plugin is missing says which package to install. API_VERSION changes when these names change
incompatibly.
"""
from __future__ import annotations

from .atomic import atomic_path
from .curation.reading import CaptionSource, Row, caption_text, missing_column, source_field
from .curation.step import RATIO_RANGE, REPETITION, CaptionStep, MaxFilter, RangeFilter, RepetitionFilter, bounds
from .errors import BuildError, InputError
from .execution.executor import Executor
from .layout import release_data
from .models.builtin import CLIP_MODELS as BUILTIN_CLIP_MODELS
from .models.uses import ModelUse
from .recipe.checks import check_clip, check_model_file, check_model_use
from .registry import GROUP, Component, registry
from .release.export import ExportResult, check_new_folder, read_rows
from .release.exporter import ExportOption, Exporter
from .stages.format import image_filename
from .stages.parts import Column, GeneratorBackend, ImageScore, ImageScreen

API_VERSION = 1

__all__ = ["API_VERSION", "BUILTIN_CLIP_MODELS", "GROUP", "RATIO_RANGE", "REPETITION", "atomic_path", "bounds",
           "BuildError", "caption_text", "CaptionSource", "CaptionStep", "check_clip",
           "check_model_file", "check_model_use", "check_new_folder", "Column", "Component", "Executor",
           "Exporter", "ExportOption", "ExportResult", "GeneratorBackend", "image_filename",
           "ImageScore", "ImageScreen", "InputError", "MaxFilter", "missing_column", "ModelUse",
           "RangeFilter", "read_rows", "registry", "release_data", "RepetitionFilter", "Row",
           "source_field"]
