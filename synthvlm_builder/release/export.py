"""Export a finished build in LLaVA's training layout.

OUT/synthvlm.json is a list of {id, image, conversations} with `image` relative
to OUT, and OUT/images/ holds the image files, so LLaVA's pretraining script
takes `--data_path OUT/synthvlm.json --image_folder OUT` as is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ..atomic import atomic_path
from ..errors import InputError
from ..stages.format import image_filename
from ..layout import release_data

PER_FOLDER = 1000  # images per subfolder: file systems slow down on huge flat dirs


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: `count` rows (samples), the files a trainer is pointed at (`paths`), and
    the line the CLI prints."""
    format: str
    out: Path
    count: int
    paths: tuple[Path, ...]
    summary: str

    def __str__(self) -> str:
        return self.summary


def format_of(stored_name: str) -> str:
    ext = stored_name.rsplit(".", 1)[-1].lower()
    return {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp"}.get(ext, "png")


def read_rows(files: list[Path], columns: list[str], batch_size: int = 256):
    """The rows of a finished build's Parquet files; a damaged file is bad input naming it."""
    import pyarrow as pa

    for path in files:
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
                yield from batch.to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise InputError("DIR", f"{path} is not a readable Parquet file ({e}); the build is damaged:"
                             " rebuild it (rerun the build with --overwrite)") from None


def check_new_folder(out: Path, flag: str) -> None:
    """An export goes to a new or empty folder: nothing a user had there is ever overwritten."""
    if out.exists() and not out.is_dir():
        raise InputError(flag, f"{out} is a file; give a new (or empty) folder")
    if out.exists() and any(out.iterdir()):
        raise InputError(flag, f"{out} exists and is not empty; choose a new folder")


def export_llava(build_dir: Path, out: Path) -> ExportResult:
    files = release_data(build_dir)  # only what the build's manifest lists: nothing else in the dir is read
    check_new_folder(out, "--llava")
    records, n = [], 0
    with atomic_path(out) as tmp:  # renamed over `out` if that is an empty folder
        for row in read_rows(files, ["id", "image", "conversations"]):
            # the file name derives from the row's id alone (stages/format.py: distinct per id)
            rel = f"images/{n // PER_FOLDER:05d}/{image_filename(row['id'], format_of(row['image']['path']))}"
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(row["image"]["bytes"])
            records.append({"id": row["id"], "image": rel, "conversations": row["conversations"]})
            n += 1
        (tmp / "synthvlm.json").write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n")
    return ExportResult("llava", out, n, (out / "synthvlm.json", out / "images"),
                        f"exported {n:,} rows -> {out}/synthvlm.json (train with --data_path {out}/synthvlm.json"
                        f" --image_folder {out})")
