"""Export a finished build in LLaVA's training layout.

OUT/synthvlm.json is a list of {id, image, conversations} with `image` relative
to OUT, and OUT/images/ holds the image files, so LLaVA's pretraining script
takes `--data_path OUT/synthvlm.json --image_folder OUT` as is.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from ..atomic import atomic_path
from ..errors import InputError
from .layout import finished_build

PER_FOLDER = 1000  # images per subfolder: file systems slow down on huge flat dirs


def export_llava(build_dir: Path, out: Path) -> int:
    files = finished_build(build_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError("--llava", f"{out} exists and is not empty; choose a new folder")
    records, n = [], 0
    with atomic_path(out) as tmp:  # renamed over `out` if that is an empty folder
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=["id", "image", "conversations"]):
                for row in batch.to_pylist():
                    rel = f"images/{n // PER_FOLDER:05d}/{row['image']['path']}"
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(row["image"]["bytes"])
                    records.append({"id": row["id"], "image": rel, "conversations": row["conversations"]})
                    n += 1
        (tmp / "synthvlm.json").write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n")
    print(f"exported {n:,} rows -> {out}/synthvlm.json (train with --data_path {out}/synthvlm.json"
          f" --image_folder {out})")
    return n
