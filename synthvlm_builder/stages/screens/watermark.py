"""watermark: the probability of an image classifier's watermark label (column watermark); images
above `max` are dropped before selection (Data-Juicer's image_watermark_filter)."""
from __future__ import annotations

from ..classifier import ClassifierScreen, classifier_schema


class WatermarkScreen(ClassifierScreen):
    name = "watermark"
    summary = "an image classifier's watermark probability"
    order = 20
    schema = classifier_schema("watermark", "watermark")
