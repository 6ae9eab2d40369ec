"""The output dir: who may use it, what the build owns in it, and swapping a finished build in (the
names are layout.py's):

    DIR/                        the dataset files (layout.py), listed in the manifest
    DIR/.synthvlm/lock          held (flock) by the one build running here
    DIR/.synthvlm/manifest.json the dataset files installed, and the identity of the build they hold
    DIR/.synthvlm/install.json  present only while a finished build is being swapped in
    DIR/.synthvlm/builds/KEY/   one build's work state (workdir.py); KEY derives from its identity

Rules (README "Reliability"): the lock is taken before anything else happens here; nothing of an
earlier build is removed until a new build is complete; then only the paths the manifest lists are
replaced or removed, so files the build never made are never touched (`--overwrite` refuses to run
while there are any); a dir that holds files but no synthvlm build is never used. Every state file
is checked when read (state.py); paths in it are relative to DIR and must stay inside it.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import reporter
from ..atomic import atomic_write, fsync_dir, remove
from ..errors import InputError
from ..layout import (BUILD_FILES, BUILDS, CARD, DATA, DATA_FILE, DIR_LOCK, JOURNAL, LEGACY_WORK, LOCK, MANIFEST,
                      SHARDS, STAGING, STANDARD_FILES, STATE, WORK, is_build_file, load_manifest)
from ..state import CorruptState, StateError, confined, load
from ..text import printable
from .workdir import WorkDir

START_OVER = "nothing was changed; rerun with --overwrite to"
KEY = re.compile(r"[0-9a-f]{16}")


@dataclass
class Contents:
    """What the dir holds now, read under its lock."""
    installed: dict | None                  # the manifest: files, identity, fingerprint, inputs; or None
    builds: dict[str, dict] = field(default_factory=dict)  # KEY -> that build's state.json
    legacy: bool = False                    # an older synthvlm-builder's (no manifest), or a corrupt manifest
    foreign: list[str] = field(default_factory=list)       # entries the build never made


class OutputDir:
    def __init__(self, path: Path, field_name: str = "output.dir"):
        self.out = Path(path)
        self.root = self.out / WORK
        self.builds = self.out / BUILDS
        self.field = field_name  # where errors about the dir point: --output or output.dir
        self._lock = None
        self.created = False
        self._made: list[Path] = []  # the folders lock() created: DIR and any missing parents

    # --- before the lock: read only ------------------------------------------------------------
    def check_usable(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise InputError(self.field, f"{self.out} is a file, not a folder; choose a folder for the build")
        if os.path.lexists(self.root) and (self.root.is_symlink() or not self.root.is_dir()):
            raise CorruptState(self.root, "not a folder (a symbolic link or a file): the build keeps its state in"
                               " a folder of its own", f"remove {self.root} if no build is in it", self.field)
        if self.out.is_dir() and not self.root.is_dir() and any(self.out.iterdir()):
            raise InputError(self.field, f"{self.out} exists, is not empty and holds no synthvlm build;"
                             " choose an empty or new directory")

    # --- the lock --------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the dir's lock (creating the dir if needed); exit 2 if another build holds it."""
        self.check_usable()
        self.created = not self.out.exists()
        folder, self._made = self.out, []
        while not os.path.lexists(folder) and folder != folder.parent:
            self._made.append(folder)
            folder = folder.parent
        self.root.mkdir(parents=True, exist_ok=True)
        lock_file = self.out / DIR_LOCK
        try:  # never through a link: the lock file is ours
            fd = os.open(lock_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise CorruptState(lock_file, f"cannot be opened ({e.strerror})", f"remove {lock_file}",
                               self.field) from None
        handle = os.fdopen(fd, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InputError(self.field, f"another synthvlm-build is running in {self.out}; wait for it to end"
                             " (or stop it), whatever flags are given") from None
        self._lock = handle

    def release(self, failed: bool = False) -> None:
        """Let go of the lock. A failed build in a dir it created, with no finished work, removes what it
        made there (its work state, then the folders if empty), never anything else: a file someone put
        into the dir meanwhile stays, and so does the dir around it."""
        if failed and self.created and not self._worth_keeping():
            for folder in sorted(self.builds.glob("*")):
                if not folder.is_symlink() and KEY.fullmatch(folder.name):
                    WorkDir(folder).remove_own_files()
            (self.out / DIR_LOCK).unlink(missing_ok=True)
            for folder in [self.builds, self.root, *self._made]:
                try:
                    folder.rmdir()
                except OSError:  # not empty (or gone): what is left is not ours to remove
                    pass
        if self._lock:
            self._lock.close()
            self._lock = None

    def _worth_keeping(self) -> bool:
        return (os.path.lexists(self.out / MANIFEST) or os.path.lexists(self.out / JOURNAL)
                or any(self.builds.glob(f"*/{SHARDS}/*.done.json")))

    # --- what is here -----------------------------------------------------------------------------
    def contents(self, overwrite: bool = False) -> Contents:
        """With `overwrite`, corrupt state is survivable: a build whose state cannot be read is treated
        as another build (to be replaced), and a corrupt manifest as an older build's layout (only files
        with a build's own names count as owned)."""
        manifest = self.manifest(tolerate=overwrite)
        builds, folders = {}, self.builds
        if os.path.lexists(folders) and (folders.is_symlink() or not folders.is_dir()):
            raise CorruptState(folders, "not a folder (a symbolic link or a file)", f"remove {folders}", self.field)
        for folder in sorted(folders.glob("*")):
            try:
                if folder.is_symlink() or not folder.is_dir() or not KEY.fullmatch(folder.name):
                    raise StateError(folder, "not a build's work folder (a link, a file or another name)")
                if os.path.lexists(folder / STATE):  # none yet: a run killed as it began this build
                    builds[folder.name] = load(folder / STATE, "build")
            except StateError as e:
                if not overwrite:
                    raise e.corrupt(f"{START_OVER} discard that build's work state, or delete {folder}",
                                    self.field) from None
                builds[folder.name] = {"corrupt": True}
        corrupt = manifest is None and os.path.lexists(self.out / MANIFEST)
        legacy = manifest is None and ((self.root / STATE).exists() or corrupt)
        return Contents(manifest, builds, legacy, self._foreign(set(self.owned_files(overwrite))))

    def manifest(self, tolerate: bool = False) -> dict | None:
        """The manifest, None if there is none (or, with `tolerate`, if it cannot be trusted)."""
        try:
            return load_manifest(self.out)
        except StateError as e:
            if tolerate:
                return None
            raise e.corrupt(f"{START_OVER} build again (it replaces only files with a build's own names:"
                            f" {', '.join(BUILD_FILES)}, {DATA}/train-NNNNN-of-NNNNN.parquet; nothing else is"
                            f" removed), or delete {self.out}", self.field) from None

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
        return self.builds / key

    def work_dir(self, key: str) -> WorkDir:
        return WorkDir(self.build_root(key), self.field)

    # --- swapping a finished build in ------------------------------------------------------------------
    def install(self, staging: Path, files: list[str], build: dict) -> None:
        """Replace the installed dataset files by `files` (relative paths under `staging`, complete and
        fsynced); `build` (identity, fingerprint, inputs) goes into the manifest. From the journal on, a
        killed install is completed by the next run. A file in the way that no build made is never
        replaced: the build stops first (its work stays, so the rerun resumes)."""
        blocked = self.in_the_way(files)
        if blocked:
            raise InputError(self.field, f"{self.out} holds {', '.join(blocked[:10])}, which no synthvlm build made and"
                             " this build would replace; move it away and rerun the same command (the build resumes)")
        atomic_write(self.out / JOURNAL, json.dumps({
            "staging": Path(staging).relative_to(self.out).as_posix(), "files": files, "build": build}))
        self.finish_install()

    def in_the_way(self, files: list[str]) -> list[str]:
        """Paths a new build's `files` would replace that no build made: a file the owned ones do not
        include, or a link or file where a folder of the build goes."""
        owned, blocked = set(self.owned_files(tolerate=True)), set()
        for rel in files:
            if rel not in owned and os.path.lexists(self.out / rel):
                blocked.add(rel)
            for folder in list(Path(rel).parents)[:-1]:
                path = self.out / folder
                if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
                    blocked.add(folder.as_posix())
        return sorted(blocked)

    def finish_install(self, discard_corrupt: bool = False) -> bool:
        """Complete an install the journal records (idempotent); False when there is none. A journal that
        cannot be trusted changes nothing: exit 2, or with `discard_corrupt` (--overwrite) it is dropped."""
        journal = self.out / JOURNAL
        if not os.path.lexists(journal):
            return False
        try:
            job = load(journal, "install")
            staging, new = self._staging(job["staging"], journal), list(job["files"])
            built = load(staging.parent / STATE, "build")["identity"]
            if job["build"]["identity"] != built:
                raise StateError(journal, f"build.identity: {job['build']['identity'][:64]!r} is not the identity of"
                                 f" the build staged in {job['staging']} ({built[:12]}...)")
            for i, rel in enumerate(new):
                staged, installed = (confined(folder, rel, journal, f"files[{i}]") for folder in (staging, self.out))
                if not is_build_file(rel):
                    raise StateError(journal, f"files[{i}]: {rel[:160]!r} is not a file a build makes")
                if not (os.path.lexists(staged) or os.path.lexists(installed)):
                    raise StateError(journal, f"files[{i}]: {rel} is neither staged nor installed")
            if not {CARD, LOCK} <= set(new) or not any(DATA_FILE.fullmatch(rel) for rel in new):
                raise StateError(journal, f"files: a finished build has {CARD}, {LOCK} and data files;"
                                 " these are not one")
        except StateError as e:
            if not discard_corrupt:
                raise e.corrupt(f"{START_OVER} drop this journal and build again, or delete {journal}",
                                self.field) from None
            reporter.note(f"dropped the corrupt install journal {journal} ({printable(e.problem)})")
            journal.unlink()
            return False
        old = self.owned_files(tolerate=True)
        (self.out / CARD).unlink(missing_ok=True)  # not a finished build while files move
        for rel in sorted(new, key=lambda r: r == CARD):  # the card last
            src = staging / rel
            if os.path.lexists(src):
                (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, self.out / rel)
        for rel in sorted(set(old) - set(new)):
            (self.out / rel).unlink(missing_ok=True)
        for folder in sorted({str(Path(r).parent) for r in old} - {"."}, reverse=True):
            path = self.out / folder
            if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                path.rmdir()
        fsync_dir(self.out)
        manifest = {"files": new, **job["build"]}
        atomic_write(self.out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        journal.unlink()
        remove(staging)  # after the journal: a journal never names a staging folder that is half gone
        return True

    def _staging(self, rel: str, journal: Path) -> Path:
        """The journal's staging folder: DIR/.synthvlm/builds/KEY/final, a real folder (or gone, once every
        file is installed), nothing else."""
        parts = rel.split("/")
        if (len(parts) != 4 or "/".join(parts[:2]) != BUILDS or not KEY.fullmatch(parts[2])
                or parts[3] != STAGING):
            raise StateError(journal, f"staging: {rel[:160]!r} is not a build's staging folder"
                             f" ({BUILDS}/KEY/{STAGING}, relative to the dir)")
        staging = confined(self.out, rel, journal, "staging")
        if os.path.lexists(staging) and (staging.is_symlink() or not staging.is_dir()):
            raise StateError(journal, f"staging: {rel} is not a folder")
        return staging

    def owned_files(self, tolerate: bool = False) -> list[str]:
        """The dataset files the build installed here (relative paths)."""
        manifest = self.manifest(tolerate)
        if manifest:
            return list(manifest["files"])
        if (self.root / STATE).exists() or os.path.lexists(self.out / MANIFEST):
            # an older build's layout, or a manifest that cannot be trusted: only files with a build's own
            # names, as regular files in real folders of the dir, count as the build's
            standard = BUILD_FILES if os.path.lexists(self.out / MANIFEST) else STANDARD_FILES
            names = [n for n in standard if _regular(self.out / n)]
            data = self.out / DATA
            if data.is_dir() and not data.is_symlink():
                names += [f"{DATA}/{p.name}" for p in sorted(data.iterdir())
                          if DATA_FILE.fullmatch(f"{DATA}/{p.name}") and _regular(p)]
            return names
        return []

    def drop_other_builds(self, keep: str) -> None:
        """After an install: the work state of every other build (and of a legacy one) goes."""
        for folder in self.builds.glob("*"):
            if folder.name != keep:
                remove(folder)
        for name in LEGACY_WORK:
            remove(self.root / name)


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()
