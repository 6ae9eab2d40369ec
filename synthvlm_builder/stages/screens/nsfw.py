"""nsfw: the probability of an image classifier's NSFW label (column nsfw); images above `max` are
dropped before selection (Data-Juicer's image_nsfw_filter uses Falconsai/nsfw_image_detection)."""
from __future__ import annotations

from ..classifier import ClassifierScreen, classifier_schema


class NsfwScreen(ClassifierScreen):
    name = "nsfw"
    summary = "an image classifier's NSFW probability"
    order = 10
    schema = classifier_schema("nsfw", "nsfw")
