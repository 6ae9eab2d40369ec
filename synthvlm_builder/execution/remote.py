"""A build whose output is object storage (`--output s3://bucket/prefix`, any fsspec URL): the store holds
everything a build dir holds (README "Scaling out"), and this machine works in a local copy of it.

    store                         local copy ($SYNTHVLM_CACHE/scratch/<hash of the URL>/out)
    PREFIX/.synthvlm/lock         a lease (lease.py), not copied: the local copy has its own flock
    PREFIX/.synthvlm/...          the work state, copied down when the lock is taken (`pull`); each file
                                  that makes progress durable goes back up as soon as it is final
                                  (workdir.py `mirror`: the shard then its marker, the captions then
                                  their index), so a run on any machine resumes where this one stopped
    PREFIX/README.md, data/...    the release: staged in the store (builds/KEY/final/), then the install
                                  journal, then the files, the card last, then the manifest; a run that
                                  finds the journal completes the install, as outdir.py does on disk

Everything outdir.py and workdir.py decide (what is finished, owned, foreign, corrupt) they decide on the
local copy with their usual checks, so a remote build is checked exactly as a local one. What comes down
from the store lands by atomic rename and is read back through state.py like any local state; an object
whose name is not a plain relative path is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .. import reporter
from ..atomic import remove
from ..errors import BuildError, InputError
from ..layout import BUILDS, CARD, DIR_LOCK, JOURNAL, LEGACY_WORK, MANIFEST, STAGING, WORK, load_manifest
from ..settings import cache_dir
from ..state import CorruptState, StateError, load
from ..storage import Store, tag
from .lease import Lease
from .outdir import OutputDir
from .workdir import WorkDir

PULLED = "pulled.json"  # beside the local copy: the store's tag of each object copied down


def scratch_for(url: str) -> Path:
    """The local copy's folder for the store `url` (one per URL, kept between runs as a cache)."""
    return cache_dir() / "scratch" / hashlib.sha256(url.encode()).hexdigest()[:16]


class RemoteOutput(OutputDir):
    def __init__(self, store: Store, field_name: str = "output.dir"):
        self.store, self.url = store, store.url
        self.scratch = scratch_for(store.url)
        super().__init__(self.scratch / "out", field_name)
        self.lease = Lease(store, DIR_LOCK, field_name)
        self._listing: dict | None = None

    def listing(self, fresh: bool = False) -> dict[str, dict]:
        if self._listing is None or fresh:
            try:
                self._listing = {rel: info for rel, info in self.store.listing().items() if rel != DIR_LOCK}
            except OSError as e:
                raise BuildError(f"cannot list {self.url}: {e}") from None
        return self._listing

    # --- before the lock -------------------------------------------------------------------------------
    def check_usable(self) -> None:
        objects = self.listing()
        if objects and not any(rel.startswith(WORK + "/") for rel in objects):
            raise InputError(self.field, f"{self.url} is not empty and holds no synthvlm build; choose an empty or"
                             " new prefix")

    # --- the lock ---------------------------------------------------------------------------------------
    def lock(self) -> None:
        self.check_usable()
        empty = not self.listing()
        self.lease.acquire()
        try:
            self.scratch.mkdir(parents=True, exist_ok=True)
            super().lock()
            self.created = empty
            self.pull()
        except BaseException:
            self.lease.release()
            raise

    def release(self, failed: bool = False) -> None:
        try:
            if self.lease.lost:  # the store is another run's now: nothing more is sent there or removed
                pass
            elif failed and self.created and not self._keep_remote():
                for rel in self.listing(fresh=True):  # a first run that failed: the prefix is left empty
                    if rel.startswith(WORK + "/"):
                        self.store.delete(rel)
            elif self._lock is not None:
                for folder in self.builds.glob("*"):
                    self.work_dir(folder.name).push_logs()
        finally:
            super().release(failed)
            self.lease.release()

    def _keep_remote(self) -> bool:
        names = self.listing(fresh=True)
        return any(rel == MANIFEST or rel == JOURNAL or rel.endswith(".done.json") for rel in names)

    # --- the local copy ---------------------------------------------------------------------------------
    def pull(self) -> None:
        """Make the local copy hold what the store holds: missing or changed objects are copied down, local
        files the store lacks are removed (the lock file aside)."""
        record_path = self.scratch / PULLED
        try:
            record = json.loads(record_path.read_text())
            record = record if isinstance(record, dict) else {}
        except (OSError, ValueError):
            record = {}
        objects, kept = self.listing(fresh=True), {}
        for rel, info in objects.items():
            try:
                self.store.key(rel)
            except ValueError:
                raise CorruptState(f"{self.url}/{rel}", "not a plain relative name", f"remove it from {self.url}",
                                   self.field) from None
            local, version = self.out / rel, tag(info)
            if not (record.get(rel) == version and local.is_file() and not local.is_symlink()
                    and local.stat().st_size == info["size"]) and not _same_bytes(local, info):
                try:
                    self.store.download(rel, local)
                except OSError as e:
                    raise BuildError(f"cannot copy {self.url}/{rel} to {local}: {e}") from None
            kept[rel] = version
        for path in sorted(self.out.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            rel = path.relative_to(self.out).as_posix()
            if path.is_dir() and not path.is_symlink():
                if rel not in (WORK, BUILDS) and not any(path.iterdir()):
                    path.rmdir()
            elif rel not in objects and rel != DIR_LOCK:
                path.unlink()
        record_path.write_text(json.dumps(kept))

    def work_dir(self, key: str) -> WorkDir:
        return WorkDir(self.build_root(key), self.field, mirror=self.store.child(f"{BUILDS}/{key}"))

    # --- the install ---------------------------------------------------------------------------------------
    def install(self, staging: Path, files: list[str], build: dict) -> None:
        """Stage the files in the store first, so the journal written next names files any machine can
        install from; then outdir.py's install, whose finish_install (below) follows on the store."""
        self.lease.check()
        if not self.in_the_way(files):
            rel_staging = Path(staging).relative_to(self.out).as_posix()
            for rel in files:
                self.store.upload(Path(staging) / rel, f"{rel_staging}/{rel}")
        super().install(staging, files, build)

    def finish_install(self, discard_corrupt: bool = False) -> bool:
        journal = self.out / JOURNAL
        old, staging = self.owned_files(tolerate=True), None
        if os.path.lexists(journal):
            try:
                staging = load(journal, "install")["staging"]
            except StateError:
                pass  # outdir.py's finish_install says what is wrong with it
            if staging is not None and not self.store.exists(JOURNAL):
                self.store.upload(journal, JOURNAL)
        done = super().finish_install(discard_corrupt)
        if done:
            self._push_release(old, staging)
        elif self.store.exists(JOURNAL) and not os.path.lexists(journal):  # dropped as corrupt (--overwrite)
            self.store.delete(JOURNAL)
        return done

    def _push_release(self, old: list[str], staging: str | None) -> None:
        """The store follows the local install: the card goes first, the files come (the card last), what
        the old build had and the new one lacks goes, then the manifest, the journal and the staged copy."""
        new = list(load_manifest(self.out)["files"])
        self.store.delete(CARD)
        for rel in sorted(new, key=lambda r: r == CARD):
            self.store.upload(self.out / rel, rel)
        for rel in sorted(set(old) - set(new)):
            self.store.delete(rel)
        self.store.upload(self.out / MANIFEST, MANIFEST)
        self.store.delete(JOURNAL)
        if staging and staging.endswith("/" + STAGING):
            self.store.delete(staging + "/")
        reporter.info(f"installed the build in {self.url}")

    def drop_other_builds(self, keep: str) -> None:
        super().drop_other_builds(keep)
        for rel in self.listing(fresh=True):
            parts = rel.split("/")
            if parts[0] == WORK and (rel.startswith(BUILDS + "/") and parts[2] != keep or parts[1] in LEGACY_WORK):
                self.store.delete(rel)


def _same_bytes(local: Path, info: dict) -> bool:
    """Whether the local file already holds the object's bytes: S3's ETag of a single-part upload is the
    md5 of its bytes (a copy this machine uploaded needs no download)."""
    etag = tag(info).strip('"')
    if len(etag) != 32 or not local.is_file() or local.is_symlink() or local.stat().st_size != info["size"]:
        return False
    h = hashlib.md5()
    with open(local, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest() == etag


def pull_release(store: Store, field: str) -> Path:
    """A local copy of the finished build in `store` (its manifest and the files it lists) for publish,
    export and verify, which then check it as they check a dir; bad input, naming the URL, when the store
    holds no finished build or an install cut short."""
    out = scratch_for(store.url) / "release"
    remove(out)
    try:
        names = store.listing(WORK)
        if JOURNAL in names:
            raise InputError(field, f"{store.url}: an install was cut short ({JOURNAL}); rerun the build command to"
                             " complete it")
        if MANIFEST not in names:
            why = ("its work state has no manifest yet: a build in progress, failed or cut short; rerun the build"
                   " command to finish it" if names else "build into it with synthvlm-build --output URL")
            raise InputError(field, f"{store.url} is not a finished synthvlm build (no {MANIFEST}): {why}")
        store.download(MANIFEST, out / MANIFEST)
        try:
            files = load_manifest(out)["files"]
        except StateError as e:
            raise e.corrupt("rebuild it: rerun the build into this prefix with --overwrite", field) from None
        for rel in files:
            if store.exists(rel):
                store.download(rel, out / rel)
    except OSError as e:
        raise BuildError(f"cannot read {store.url}: {e}") from None
    return out
