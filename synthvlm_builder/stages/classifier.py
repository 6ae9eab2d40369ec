"""The image-classifier screens (stages/screens/nsfw.py, watermark.py): any transformers
AutoModelForImageClassification with its image processor, batched on the build's device; the
probability of one label is the screen's column, and images above `max` are dropped before selection."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

from ..models.uses import ModelUse
from .parts import Column, ImageScreen

_SCHEMA = {'description': 'Screen every generated image with a Hugging Face image-classification model (transformers '
                    "AutoModelForImageClassification + its image processor), batched on the build's device: "
                    'the probability of `label` is column `{column}`; images above max are dropped before '
                    'selection.',
     'type': 'object',
     'additionalProperties': False,
     'required': ['model'],
     'properties': {'model': {'description': 'A Hub model id or a local folder saved with save_pretrained '
                                             '(relative to the recipe file).',
                              'type': 'string',
                              'minLength': 1},
                    'revision': {'description': 'Hub revision of the model.', 'type': 'string', 'minLength': 1},
                    'label': {'description': "The label (a name in the model's id2label, any case, or its "
                                             'index) whose probability is the score.',
                              'type': 'string',
                              'minLength': 1,
                              'default': 'nsfw'},
                    'max': {'description': 'Drop images whose probability of label is above this.',
                            'type': 'number',
                            'minimum': 0,
                            'maximum': 1,
                            'default': 0.5}}}


def classifier_schema(column: str, label: str) -> dict:
    """The recipe schema of a classifier screen whose column is `column` and default label `label`."""
    schema = copy.deepcopy(_SCHEMA)
    schema["description"] = schema["description"].format(column=column)
    schema["properties"]["label"]["default"] = label
    return schema


@dataclass(frozen=True)
class ClassifierScreenConfig:
    model: str                   # Hub id or absolute local folder
    label: str
    max: float = 0.5
    revision: Optional[str] = None


class ClassifierScreen(ImageScreen):
    """The base of the classifier screens: each names its column, default label and order."""

    legacy = "null"
    Config = ClassifierScreenConfig

    @classmethod
    def columns(cls, cfg: ClassifierScreenConfig) -> list[Column]:
        return [Column(cls.name, "float32", f"probability of the {cls.name} classifier's label", score=True,
                       selection=True)]

    @classmethod
    def limits(cls, cfg: ClassifierScreenConfig) -> list[tuple[str, str, float]]:
        return [(cls.name, "<=", cfg.max)]

    @classmethod
    def models(cls, value: dict, at: tuple) -> list[ModelUse]:
        return [ModelUse(value, at, "folder", digest=f"screen.{cls.name}", lock=(cls.name,),
                         what=f"the {cls.name} classifier",
                         expected="a transformers image classifier saved with save_pretrained, or a Hub id org/name")]

    @classmethod
    def check(cls, c, value, at, data) -> None:
        from ..recipe.checks import check_model_use
        for use in cls.models(value, at):
            check_model_use(c, use)

    @classmethod
    def preflight(cls, cfg: ClassifierScreenConfig) -> None:
        from ..errors import InputError
        from ..models.preflight import reported_at
        from ..models.screens import classifier_labels, label_index
        with reported_at(f"screen.{cls.name}.model"):
            labels = classifier_labels(cfg.model, cfg.revision)
        if labels is not None:
            try:
                label_index(labels, cfg.label)
            except ValueError:
                raise InputError(f"screen.{cls.name}.label", f"{cfg.label!r} is not a label of {cfg.model}; its"
                                 f" labels: {', '.join(labels.values())}") from None

    @classmethod
    def load(cls, cfg: ClassifierScreenConfig, context):
        from ..models.screens import load_image_classifier
        return _Classifier(cls.name, load_image_classifier(cfg.model, cfg.revision, cfg.label, context.device))


class _Classifier:
    def __init__(self, column: str, classifier):
        self.column, self.classifier = column, classifier

    def score(self, batch) -> dict:
        return {self.column: self.classifier.score(batch.host)}
