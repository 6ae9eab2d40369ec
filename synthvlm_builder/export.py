"""Export a finished build in LLaVA's training layout.

OUT/synthvlm.json is a list of {id, image, conversations} with `image` relative
to OUT, and OUT/images/ holds the image files, so LLaVA's pretraining script
takes `--data_path OUT/synthvlm.json --image_folder OUT` as is.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from .errors import InputError

PER_FOLDER = 1000  # images per subfolder: file systems slow down on huge flat dirs


def finished_build(build_dir: Path) -> list[Path]:
    """The data files of a finished build, or a clear error."""
    files = sorted((build_dir / "data").glob("train-*.parquet"))
    if not (build_dir / "README.md").is_file() or not (build_dir / "recipe.lock.json").is_file() or not files:
        raise InputError("DIR", f"{build_dir} is not a finished synthvlm build (expected README.md,"
                         " recipe.lock.json and data/train-*.parquet)")
    return files


def export_llava(build_dir: Path, out: Path) -> int:
    files = finished_build(build_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError("--llava", f"{out} exists and is not empty; choose a new folder")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    records, n = [], 0
    try:
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
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"exported {n:,} rows -> {out}/synthvlm.json (train with --data_path {out}/synthvlm.json"
          f" --image_folder {out})")
    return n
