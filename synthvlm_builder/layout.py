"""The files of a finished build (the Hub layout), named once for the build, export, publish and verify."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError

CARD = "README.md"
RECIPE = "recipe.yaml"
LOCK = "recipe.lock.json"
STATS = "stats.json"
HISTOGRAM = "score_histogram.png"
SAMPLES = "sample_grid.png"
CAPTIONS = "captions.jsonl"  # the curated captions in plan order: the prompts of every candidate batch
DATA = "data"
# The standard files of a build (all but its data files), and with the curated captions that builds since
# the manifest was introduced also install; outdir.py owns these when no manifest says otherwise.
STANDARD_FILES = (CARD, RECIPE, LOCK, STATS, HISTOGRAM, SAMPLES)
BUILD_FILES = STANDARD_FILES + (CAPTIONS,)


def data_file(index: int, count: int) -> str:
    return f"{DATA}/train-{index:05d}-of-{count:05d}.parquet"


def data_files(build_dir: Path) -> list[Path]:
    return sorted((Path(build_dir) / DATA).glob("train-*.parquet"))


def is_finished(build_dir: Path) -> bool:
    """The card is installed last, so a dir with a card, a lock and data is a finished build."""
    build_dir = Path(build_dir)
    return (build_dir / CARD).is_file() and (build_dir / LOCK).is_file() and bool(data_files(build_dir))


def finished_build(build_dir: Path) -> list[Path]:
    """The data files of a finished build, or a clear error."""
    if not is_finished(build_dir):
        raise InputError("DIR", f"{build_dir} is not a finished synthvlm build (expected {CARD},"
                         f" {LOCK} and {DATA}/train-*.parquet)")
    return data_files(build_dir)


def upload_paths(build_dir: Path) -> list[str]:
    """Every file of the build, as repo paths; hidden files and dirs (.synthvlm/ ...) stay local."""
    out = []
    for path in sorted(Path(build_dir).rglob("*")):
        rel = path.relative_to(build_dir)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return out
