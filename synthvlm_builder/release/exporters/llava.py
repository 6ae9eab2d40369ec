"""llava: LLaVA's training layout, OUT/synthvlm.json (a list of {id, image, conversations}) and
OUT/images/, so LLaVA's pretraining script takes `--data_path OUT/synthvlm.json --image_folder OUT`."""
from __future__ import annotations

from pathlib import Path

from ..exporter import Exporter


class LlavaExporter(Exporter):
    name = "llava"
    summary = "LLaVA's training layout: OUT/synthvlm.json + OUT/images/"
    order = 10

    @classmethod
    def export(cls, build_dir: Path, out: Path, **options) -> int:
        from ..export import export_llava
        return export_llava(Path(build_dir), Path(out))
