"""Where a build lives when it is not a local folder: a `Store`, an fsspec filesystem and a root
(`s3://bucket/prefix`, `gs://...`, any fsspec URL). A local path never becomes a Store: the build dir code
(atomic.py, execution/outdir.py, workdir.py) keeps its POSIX behaviour, fsync, rename and flock, and an
object-store build runs that same code on a local working copy that execution/remote.py keeps in step with
the store (README "Scaling out").

What "atomic" means here: an object appears whole or not at all (one PUT, or a multipart upload that is
completed last), so a write needs no temp name; what makes a shard *count* is still its completion marker,
written after the shard (workdir.py). Conditional writes (`create`, `replace_if`, `delete_if`) are S3's
`If-None-Match: *` and `If-Match: ETAG`, checked by the server; on a filesystem without them they are a
check followed by a write, which is not safe against a writer racing in between (execution/lease.py says
what that means for the lock).

Credentials and endpoints come from the filesystem's own configuration: for s3:// the AWS variables
(AWS_ENDPOINT_URL for an S3-compatible server, AWS_ACCESS_KEY_ID, ...) or fsspec's (FSSPEC_S3_*).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from .atomic import atomic_path
from .errors import BuildError, InputError

URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
MAX_READ = 64 << 20  # a state object is small (state.py MAX_BYTES): a huge one is damage
BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


class Conflict(Exception):
    """A conditional write found the object changed (or present, for `create`)."""


def is_url(text) -> bool:
    """Whether a build's place names a store (`s3://...`) rather than a local folder (`file://` is a
    folder) or a Hub repo (`hf://`, hub.py)."""
    return (isinstance(text, str) and URL.match(text) is not None
            and not text.lower().startswith(("file://", "hf://")))


def local_path(text: str) -> str:
    """A `file://` URL as the folder it names; anything else unchanged."""
    return text[len("file://"):] if isinstance(text, str) and text.startswith("file://") else text


class Store:
    """Objects under one root of an fsspec filesystem; names are relative POSIX paths ("a/b.json")."""

    def __init__(self, url: str, fs, root: str):
        self.url, self.fs, self.root = url.rstrip("/"), fs, root.rstrip("/")

    def child(self, rel: str) -> "Store":
        return Store(f"{self.url}/{rel}", self.fs, self.key(rel))

    @property
    def options(self) -> dict:
        """What opens this store again in another process (a Ray actor): its filesystem's options."""
        return dict(getattr(self.fs, "storage_options", {}) or {})

    def key(self, rel: str) -> str:
        parts = rel.split("/") if rel else []
        if any(p in ("", ".", "..") for p in parts) or "\\" in rel or "\0" in rel:
            raise ValueError(f"not a plain relative name: {rel!r}")
        return "/".join([self.root, *parts])

    # --- reading --------------------------------------------------------------------------------
    def info(self, rel: str) -> dict | None:
        self.fs.invalidate_cache(self.key(rel))  # another process (a Ray actor) may have written it since
        try:
            info = self.fs.info(self.key(rel))
        except FileNotFoundError:
            return None
        return info if info.get("type") == "file" else None

    def exists(self, rel: str) -> bool:
        return self.info(rel) is not None

    def read(self, rel: str, limit: int = MAX_READ) -> bytes:
        """The object's bytes; FileNotFoundError when absent, ValueError when larger than `limit`."""
        info = self.info(rel)
        if info is None:
            raise FileNotFoundError(f"{self.url}/{rel}")
        if info["size"] > limit:
            raise ValueError(f"{info['size']:,} bytes is far larger than any state file")
        return self.fs.cat_file(self.key(rel))

    def listing(self, rel: str = "") -> dict[str, dict]:
        """Every object under `rel` (all when empty): relative name -> info (size, "ETag", ...)."""
        base = self.key(rel) if rel else self.root
        self.fs.invalidate_cache(base)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        prefix = self.root + "/"
        return {name[len(prefix):]: info for name, info in sorted(found.items())
                if name.startswith(prefix) and info.get("type") == "file"}

    def download(self, rel: str, local: Path) -> None:
        """The object into `local`, atomically (a killed copy leaves nothing at `local`)."""
        with atomic_path(Path(local)) as tmp:
            self.fs.get_file(self.key(rel), str(tmp))

    # --- writing --------------------------------------------------------------------------------
    def write(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self.key(rel), data)

    def upload(self, local: Path, rel: str) -> None:
        self.fs.put_file(str(local), self.key(rel))

    def delete(self, rel: str) -> None:
        """Remove one object, or every object under `rel` ending in "/" (absent ones are no error)."""
        names = [self.key(r) for r in self.listing(rel.rstrip("/"))] if rel.endswith("/") else [self.key(rel)]
        for name in names:
            try:
                self.fs.rm_file(name)
            except FileNotFoundError:
                pass

    # --- conditional writes (execution/lease.py) -------------------------------------------------------
    @property
    def conditional(self) -> bool:
        """Whether the server checks the conditions (S3 and its compatibles); else check, then write."""
        return hasattr(self.fs, "call_s3")

    def version(self, rel: str) -> str | None:
        """What names the object's current content: S3's ETag; elsewhere the sha256 of its bytes (not
        every filesystem reports a tag that changes with each write). None when absent."""
        if self.conditional:
            info = self.info(rel)
            return None if info is None else tag(info)
        try:
            return hashlib.sha256(self.read(rel)).hexdigest()
        except FileNotFoundError:
            return None

    def create(self, rel: str, data: bytes) -> str:
        """Create the object only if there is none (If-None-Match: *); its version, or Conflict."""
        try:
            if self.conditional:
                return self._s3("put_object", rel, Body=data, IfNoneMatch="*")["ETag"]
            self.fs.pipe_file(self.key(rel), data, mode="create")
        except FileExistsError:
            raise Conflict(rel) from None
        return self.version(rel)

    def replace_if(self, rel: str, data: bytes, etag: str) -> str:
        """Replace the object only if it is still version `etag` (If-Match); the new version, or Conflict."""
        if self.conditional:
            return self._s3("put_object", rel, Body=data, IfMatch=etag)["ETag"]
        if self.version(rel) != etag:
            raise Conflict(rel)
        self.write(rel, data)
        return self.version(rel)

    def delete_if(self, rel: str, etag: str) -> None:
        """Delete the object only if it is still version `etag`; Conflict when it changed."""
        if self.conditional:
            self._s3("delete_object", rel, IfMatch=etag)
        elif self.version(rel) == etag:
            self.delete(rel)
        else:
            raise Conflict(rel)

    def _s3(self, call: str, rel: str, **kwargs) -> dict:
        bucket, key, _ = self.fs.split_path(self.key(rel))
        try:
            out = self.fs.call_s3(call, Bucket=bucket, Key=key, **kwargs)
        except FileExistsError:
            raise
        except OSError as e:  # s3fs maps 412 Precondition Failed to EINVAL; its message names it
            if "pre-condition" in str(e).lower() or "precondition" in str(e).lower():
                raise Conflict(rel) from None
            raise
        finally:
            self.fs.invalidate_cache(self.key(rel))
        return out


def tag(info: dict) -> str:
    """The version tag of an object's info (S3's ETag; elsewhere what fsspec offers)."""
    return str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("mtime") or
               info.get("generation") or "")


def reopen(url: str, options: dict) -> Store:
    """A store another process opened (`Store.options`): a Ray actor's view of the build's store."""
    import fsspec
    fs, root = fsspec.core.url_to_fs(url, **options)
    return Store(url, fs, root)


def open_store(url: str, field: str, options: dict | None = None) -> Store:
    """The store `url` names, its root reachable; InputError(field) for a URL that names none (an unknown
    scheme, a backend not installed, no such bucket), BuildError when it cannot be reached now."""
    scheme = url.split("://", 1)[0].lower()
    path = url.split("://", 1)[1]
    if not path.strip("/") or any(p in (".", "..") for p in PurePosixPath(path).parts) or "\\" in path:
        raise InputError(field, f"{url} names no bucket and prefix (e.g. {scheme}://bucket/datasets/name)")
    import fsspec
    try:
        fs, root = fsspec.core.url_to_fs(url, **(options or {}))
    except ImportError:
        package = BACKENDS.get(scheme, f"the fsspec backend for {scheme}://")
        raise InputError(field, f"{scheme}:// needs {package}: pip install 'synthvlm-builder[s3]'"
                         f" (or pip install {package})") from None
    except ValueError as e:
        raise InputError(field, f"{url}: {e}") from None
    bucket = root.split("/", 1)[0]
    try:
        if scheme in BACKENDS and not fs.exists(bucket):
            raise InputError(field, f"{url}: the bucket {bucket} does not exist (or these credentials cannot see"
                             " it); create it first")
    except (OSError, PermissionError) as e:
        raise BuildError(f"cannot reach {url}: {e}") from None
    return Store(f"{scheme}://{root.rstrip('/')}", fs, root)
