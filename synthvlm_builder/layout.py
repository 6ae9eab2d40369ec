"""Every file name of a build dir, in one place: the files of a finished build (the Hub layout), named
once for the build, export, publish and verify, and the build's own work state under DIR/.synthvlm/
(state.py has each state file's schema); and which files a build owns: those its manifest
(DIR/.synthvlm/manifest.json) lists, and only those. Publish and export read nothing else, so a
`notes.env`, an export folder or a stray Parquet file put into the dir never reaches the Hub or a
training set."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import InputError
from .state import StateError, confined, load

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
DATA_FILE = re.compile(rf"{DATA}/train-[0-9]{{5}}-of-[0-9]{{5}}\.parquet")
REBUILD = "rebuild it: rerun the build into this dir with --overwrite"

# The build's own state, in DIR/WORK: never published, never one of the files above.
WORK = ".synthvlm"
MANIFEST = f"{WORK}/manifest.json"  # the files the installed build owns, and its identity
JOURNAL = f"{WORK}/install.json"    # present only while a finished build is swapped in (execution/outdir.py)
DIR_LOCK = f"{WORK}/lock"           # held (flock) by the one build running in the dir
BUILDS = f"{WORK}/builds"           # BUILDS/KEY/: one build's work folder (execution/workdir.py)
# In a build's work folder, relative to it:
STATE = "state.json"                # the build's identity
CURATED = CAPTIONS                  # the curated captions, installed as they are
CURATED_INDEX = "captions.json"     # their count and digest, and where each shard's captions start
EVENTS = "events.jsonl"             # what each run did, one JSON per line
BATCH = "batch.json"                # the batch size generation uses (execution/batching.py)
UPLOADS = "uploads.json"            # what --push has sent already (release/stream.py)
UPLOADING = "uploading"             # links to the data files being uploaded (release/stream.py)
SHARDS = "shards"                   # the candidate shards and their completion markers
STAGING = "final"                   # a finished build's files before the swap (release/assemble.py)
# What a build writes in its work folder before any shard is finished: what a failed first run removes again
WORK_FILES = re.compile("|".join([*(re.escape(name) for name in (STATE, CURATED, CURATED_INDEX, EVENTS, BATCH,
                                                                   UPLOADS)),
                                  rf"{SHARDS}/shard-[0-9]{{5}}\.(parquet|done\.json)",
                                  rf"{UPLOADING}/[0-9]{{5}}-part-[0-9]{{5}}\.parquet"]))
# The work state an older synthvlm-builder kept directly in DIR/WORK (dropped once a build is installed)
LEGACY_WORK = (STATE, SHARDS, CURATED, CURATED_INDEX, EVENTS, "hf-cache", STAGING)


def data_file(index: int, count: int) -> str:
    return f"{DATA}/train-{index:05d}-of-{count:05d}.parquet"


def data_part(index: int) -> str:
    """A data file as it is written into STAGING, before the files are counted (release/dataset.py)."""
    return f"part-{index:05d}.parquet"


def shard_file(index: int) -> str:
    return f"{SHARDS}/shard-{index:05d}.parquet"


def marker_file(index: int) -> str:
    """The completion marker of shard `index`: it counts as finished only when this matches it."""
    return f"{SHARDS}/shard-{index:05d}.done.json"


def is_build_file(rel: str) -> bool:
    """Whether `rel` is a name a build gives one of its files (the only names a manifest may list)."""
    return rel in BUILD_FILES or DATA_FILE.fullmatch(rel) is not None


def load_manifest(build_dir: Path) -> dict | None:
    """The manifest of `build_dir`, None when there is none; StateError when it cannot be trusted: not
    its schema, or a file that is not a build's name or that leads outside the dir."""
    path = Path(build_dir) / MANIFEST
    if not os.path.lexists(path):
        return None
    manifest = load(path, "manifest")
    for i, rel in enumerate(manifest["files"]):
        confined(build_dir, rel, path, f"files[{i}]")
        if not is_build_file(rel):
            raise StateError(path, f"files[{i}]: {rel[:160]!r} is not a file a build makes ({', '.join(BUILD_FILES)},"
                             f" {DATA}/train-NNNNN-of-NNNNN.parquet)")
    return manifest


def release_files(build_dir: Path) -> list[str]:
    """The files of the finished build in `build_dir` as its manifest lists them (relative paths), each
    present as a regular file; bad input (exit 2) when there is no trustworthy manifest."""
    build_dir = Path(build_dir)
    try:
        manifest = load_manifest(build_dir)
    except StateError as e:
        raise e.corrupt(REBUILD) from None
    if manifest is None:
        why = ("its work state has no manifest yet: a build in progress, failed or cut short; rerun the build"
               " command to finish it" if (build_dir / WORK).is_dir() else
               "publish and export read only the files a build lists there; build into the dir with synthvlm-build")
        raise InputError("DIR", f"{build_dir} is not a finished synthvlm build (no {MANIFEST}): {why}")
    if os.path.lexists(build_dir / JOURNAL):
        raise InputError("DIR", f"{build_dir}: an install was cut short ({JOURNAL}); rerun the build command to"
                         " complete it")
    files = list(manifest["files"])
    missing = [rel for rel in files if not _is_regular(build_dir / rel)]
    if missing:
        raise InputError("DIR", f"{build_dir}: {', '.join(missing[:5])}, listed in its manifest, is missing or not a"
                         f" regular file: the build was changed after it finished; {REBUILD}")
    if CARD not in files or LOCK not in files or not any(DATA_FILE.fullmatch(rel) for rel in files):
        raise InputError("DIR", f"{build_dir} is not a finished synthvlm build (its manifest lists no {CARD},"
                         f" {LOCK} or {DATA}/ file); {REBUILD}")
    return files


def release_data(build_dir: Path) -> list[Path]:
    """The data files of the finished build in `build_dir` as its manifest lists them, in order (what
    export reads); bad input when there is no trustworthy manifest."""
    return [Path(build_dir) / rel for rel in sorted(release_files(build_dir)) if DATA_FILE.fullmatch(rel)]


def data_files(build_dir: Path) -> list[Path]:
    """The data files of a build (the manifest's); a folder holding no build state at all (a release
    downloaded from the Hub) is read as the Hub reads it: every data/train-*.parquet."""
    build_dir = Path(build_dir)
    if not os.path.lexists(build_dir / WORK):
        return sorted((build_dir / DATA).glob("train-*.parquet"))
    return release_data(build_dir)


def is_finished(build_dir: Path) -> bool:
    """The card is installed last, so a dir with a card, a lock and data is a finished build."""
    try:
        finished_build(build_dir)
        return True
    except InputError:
        return False


def finished_build(build_dir: Path) -> list[Path]:
    """The data files of a finished build, or a clear error."""
    build_dir = Path(build_dir)
    files = data_files(build_dir)
    if not ((build_dir / CARD).is_file() and (build_dir / LOCK).is_file() and files):
        raise InputError("DIR", f"{build_dir} is not a finished synthvlm build (expected {CARD},"
                         f" {LOCK} and {DATA}/train-*.parquet)")
    return files


def upload_paths(build_dir: Path) -> list[str]:
    """The files a release holds, as repo paths: those the build's manifest lists, nothing else (hidden
    files, .synthvlm/, exports and notes put into the dir stay local)."""
    return sorted(release_files(build_dir))


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
