"""The output dir: who may use it, what the build owns in it, and swapping a finished build in.

    DIR/                        the dataset files (layout.py), listed in the manifest
    DIR/.synthvlm/lock          held (flock) by the one build running here
    DIR/.synthvlm/manifest.json the dataset files installed, and the identity of the build they hold
    DIR/.synthvlm/install.json  present only while a finished build is being swapped in
    DIR/.synthvlm/builds/KEY/   one build's work state (workdir.py); KEY derives from its identity

Rules (README "Reliability"): the lock is taken before anything else happens here; nothing of an
earlier build is removed until a new build is complete; then only the paths the manifest lists are
replaced or removed, so files the build never made are never touched (`--overwrite` refuses to run
while there are any); a dir that holds files but no synthvlm build is never used.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write, fsync_dir, remove
from ..errors import InputError
from ..layout import BUILD_FILES, STANDARD_FILES
from .workdir import WORK

LEGACY = ("state.json", "shards", "captions.jsonl", "captions.json", "events.jsonl", "hf-cache", "final")


@dataclass
class Contents:
    """What the dir holds now, read under its lock."""
    installed: dict | None                  # the manifest: files, identity, fingerprint, inputs; or None
    builds: dict[str, dict] = field(default_factory=dict)  # KEY -> that build's state.json
    legacy: bool = False                    # made by an older synthvlm-builder (no manifest)
    foreign: list[str] = field(default_factory=list)       # entries the build never made


class OutputDir:
    def __init__(self, path: Path, field_name: str = "output.dir"):
        self.out = Path(path)
        self.root = self.out / WORK
        self.field = field_name  # where errors about the dir point: --output or output.dir
        self._lock = None
        self.created = False

    # --- before the lock: read only ------------------------------------------------------------
    def check_usable(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise InputError(self.field, f"{self.out} is a file, not a folder; choose a folder for the build")
        if self.out.is_dir() and not self.root.is_dir() and any(self.out.iterdir()):
            raise InputError(self.field, f"{self.out} exists, is not empty and holds no synthvlm build;"
                             " choose an empty or new directory")

    # --- the lock --------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the dir's lock (creating the dir if needed); exit 2 if another build holds it."""
        self.check_usable()
        self.created = not self.out.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InputError(self.field, f"another synthvlm-build is running in {self.out}; wait for it to end"
                             " (or stop it), whatever flags are given") from None
        self._lock = handle

    def release(self, failed: bool = False) -> None:
        """Let go of the lock; a dir this run created and that holds no finished work goes away."""
        if failed and self.created and not (self.root / "manifest.json").exists() and not self._finished_work():
            shutil.rmtree(self.out, ignore_errors=True)
        if self._lock:
            self._lock.close()
            self._lock = None

    def _finished_work(self) -> bool:
        return any((self.root / "builds").glob("*/shards/*.done.json"))

    # --- what is here -----------------------------------------------------------------------------
    def contents(self, overwrite: bool = False) -> Contents:
        """With `overwrite`, a corrupt record is survivable: a build whose state cannot be read is
        treated as another build (to be replaced), and a corrupt manifest as an older build's layout
        (only the standard dataset files count as owned)."""
        manifest = self._read_json(self.root / "manifest.json", overwrite)
        builds = {}
        for state in sorted((self.root / "builds").glob("*/state.json")):
            builds[state.parent.name] = self._read_json(state, overwrite) or {"corrupt": True}
        corrupt = manifest is None and (self.root / "manifest.json").exists()
        legacy = manifest is None and ((self.root / "state.json").exists() or corrupt)
        return Contents(manifest, builds, legacy, self._foreign(set(self.owned_files(overwrite))))

    def _read_json(self, path: Path, tolerate: bool = False) -> dict | None:
        """The JSON object in `path`, None if absent (or, with `tolerate`, unreadable)."""
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                return data
            problem = "not a JSON object"
        except (OSError, ValueError) as e:
            problem = str(e)
        if tolerate:
            return None
        raise InputError(self.field, f"{path} is corrupt ({problem}); rerun with --overwrite to start this build"
                         " over (the dataset files are replaced only once the new build is complete)")

    def _foreign(self, owned: set[str]) -> list[str]:
        """Entries under the dir (but .synthvlm/) that no build made: files the manifest does not list
        and folders holding none it lists; only the topmost of each is named."""
        owned_dirs = {p.as_posix() for rel in owned for p in Path(rel).parents if p.as_posix() != "."}
        found: list[str] = []

        def walk(folder: Path) -> None:
            for path in sorted(folder.iterdir()):
                rel = path.relative_to(self.out).as_posix()
                if rel == WORK:
                    continue
                if path.is_dir() and not path.is_symlink():
                    walk(path) if rel in owned_dirs else found.append(rel + "/")
                elif rel not in owned:
                    found.append(rel)

        if self.out.is_dir():
            walk(self.out)
        return found

    # --- one build's work state ----------------------------------------------------------------------
    def build_root(self, key: str) -> Path:
        return self.root / "builds" / key

    # --- swapping a finished build in ------------------------------------------------------------------
    def install(self, staging: Path, files: list[str], build: dict) -> None:
        """Replace the installed dataset files by `files` (relative paths under `staging`, complete and
        fsynced); `build` (identity, fingerprint, inputs) goes into the manifest. From the journal on, a
        killed install is completed by the next run."""
        atomic_write(self.root / "install.json", json.dumps({"staging": str(staging), "files": files,
                                                             "build": build}))
        self.finish_install()

    def finish_install(self) -> bool:
        """Complete an install the journal records (idempotent); False when there is none."""
        journal = self.root / "install.json"
        if not journal.exists():
            return False
        job = self._read_json(journal)
        staging, new = Path(job["staging"]), list(job["files"])
        old = self.owned_files(tolerate=True)
        (self.out / "README.md").unlink(missing_ok=True)  # not a finished build while files move
        for rel in sorted(new, key=lambda r: r == "README.md"):  # the card last
            src = staging / rel
            if src.exists():
                (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, self.out / rel)
        for rel in sorted(set(old) - set(new)):
            (self.out / rel).unlink(missing_ok=True)
        for folder in sorted({str(Path(r).parent) for r in old} - {"."}, reverse=True):
            if (self.out / folder).is_dir() and not any((self.out / folder).iterdir()):
                (self.out / folder).rmdir()
        fsync_dir(self.out)
        manifest = {"files": new, **job["build"]}
        atomic_write(self.root / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        remove(staging)
        journal.unlink()
        return True

    def owned_files(self, tolerate: bool = False) -> list[str]:
        """The dataset files the build installed here (relative paths)."""
        manifest = self._read_json(self.root / "manifest.json", tolerate)
        if manifest:
            return list(manifest["files"])
        if (self.root / "state.json").exists() or (self.root / "manifest.json").exists():
            # an older build's layout, or a manifest that could not be read: the standard files there
            standard = BUILD_FILES if (self.root / "manifest.json").exists() else STANDARD_FILES
            names = [n for n in standard if (self.out / n).is_file()]
            return names + [p.relative_to(self.out).as_posix() for p in sorted((self.out / "data").glob("train-*"))]
        return []

    def drop_other_builds(self, keep: str) -> None:
        """After an install: the work state of every other build (and of a legacy one) goes."""
        for folder in (self.root / "builds").glob("*"):
            if folder.name != keep:
                remove(folder)
        for name in LEGACY:
            remove(self.root / name)
