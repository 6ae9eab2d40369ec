"""imagefolder: the layout `datasets.load_dataset("imagefolder", data_dir=OUT)` reads, OUT/train/ with
each image and OUT/train/metadata.jsonl ({file_name, caption, id, and the score columns})."""
from __future__ import annotations

import json
from pathlib import Path

from synthvlm_builder.plugins import (ExportResult, Exporter, atomic_path, check_new_folder, image_filename, read_rows,
                                      release_data)


class ImageFolderExporter(Exporter):
    name = "imagefolder"
    summary = "the datasets imagefolder layout: OUT/train/*.png + OUT/train/metadata.jsonl"
    order = 100

    @classmethod
    def export(cls, build_dir: Path, out: Path, **options) -> ExportResult:
        import pyarrow.parquet as pq
        files = release_data(Path(build_dir))  # only the data files the build made
        check_new_folder(Path(out), "--imagefolder")
        columns = [c for c in pq.ParquetFile(files[0]).schema_arrow.names if c != "conversations"]
        n = 0
        with atomic_path(Path(out)) as tmp:
            (tmp / "train").mkdir(parents=True)
            with open(tmp / "train" / "metadata.jsonl", "w", encoding="utf-8") as meta:
                for row in read_rows(files, columns):
                    image = row.pop("image")
                    name = image_filename(row["id"], image["path"].rsplit(".", 1)[-1].replace("jpg", "jpeg"))
                    (tmp / "train" / name).write_bytes(image["bytes"])
                    meta.write(json.dumps({"file_name": name, **row}, ensure_ascii=False) + "\n")
                    n += 1
        return ExportResult(cls.name, Path(out), n, (Path(out) / "train",),
                            f"exported {n:,} rows -> {out}/train (load_dataset('imagefolder', data_dir={str(out)!r}))")
