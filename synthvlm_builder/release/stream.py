"""`--push` uploads while the build runs: each data file goes to the repository's LFS storage the
moment it is final (release/dataset.py closes files one at a time), through huggingface_hub's
`preupload_lfs_files`; the release itself is still the one commit plus tag that publish.py makes at
the end, and its create_commit finds every preuploaded object already stored (LFS is addressed by
sha256), so nothing is sent twice and publish.py's identity and integrity rules apply unchanged.

What was uploaded is recorded in the build's work state (DIR/.synthvlm/builds/KEY/uploads.json,
written atomically after each upload: repo and sha256 -> size). A killed build rewrites the same
data files byte for byte (dataset.py), finds their digests in the record and does not upload them
again. An upload that fails here is only reported: the final publish sends whatever is missing.

Fault injection (README "Reliability"): SYNTHVLM_TEST_SIGNAL=SIG@upload:N sends SIG to the build once
data file N is uploaded and recorded.
"""
from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .. import reporter
from ..atomic import atomic_write, remove
from ..errors import BuildError
from ..layout import DATA, UPLOADING, UPLOADS
from ..retry import HUB
from ..settings import setting
from ..state import StateError, load
from .publish import check_destination, check_tagged, explain


def open_stream(recipe, fingerprint: str, identity: str, work_root: Path) -> "StreamUploader | None":
    """Check the destination before anything is built: a repository and a token, the repo created,
    and the tag either absent or holding this very data (then there is nothing to upload: None)."""
    repo_id = recipe.publish.repo_id
    check_destination(repo_id, "publish.repo_id")
    from huggingface_hub import HfApi
    api, tag = HfApi(), f"v{recipe.version}"
    try:
        HUB.retry("create_repo", lambda: api.create_repo(repo_id, repo_type="dataset", private=recipe.publish.private,
                                                     exist_ok=True))
        refs = HUB.retry("list_repo_refs", lambda: api.list_repo_refs(repo_id, repo_type="dataset"))
        if any(t.name == tag for t in refs.tags):
            check_tagged(api, repo_id, tag, fingerprint, identity)  # other data under the tag: exit 2 now
            reporter.info(f"{repo_id} {tag} already holds this build; nothing to upload")
            return None
    except (*HUB.transport_errors(), OSError) as e:
        raise BuildError(explain(e, repo_id)) from e
    return StreamUploader(api, repo_id, work_root)


class StreamUploader:
    """Uploads data files in a background thread, in the order they were finished."""

    def __init__(self, api, repo_id: str, work_root: Path):
        self.api, self.repo_id = api, repo_id
        self.record = Path(work_root) / UPLOADS
        self.links = Path(work_root) / UPLOADING
        remove(self.links)  # links a killed run left behind
        self.links.mkdir(parents=True)
        self.uploaded = self._read()
        self.sent = self.skipped = self.failed = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="upload")
        self._futures: list[Future] = []
        self._signal_at = _test_signal()
        if self.uploaded:
            reporter.info(f"uploads: {len(self.uploaded)} data file(s) of this build are already in {repo_id}")

    def _read(self) -> dict:
        """What the record says is uploaded already; nothing when it cannot be trusted (state.py
        "uploads"): sending a file again costs time, never data."""
        try:
            data = load(self.record, "uploads")
        except StateError:  # none yet, or damaged
            return {}
        return dict(data["files"]) if data["repo_id"] == self.repo_id else {}

    def submit(self, index: int, path: Path) -> None:
        """Called by the writer as each data file is closed. A hard link keeps the bytes reachable
        while the writer renames the file to its final name."""
        link = self.links / f"{index:05d}-{path.name}"
        remove(link)
        os.link(path, link)
        self._futures.append(self._pool.submit(self._upload, index, link))

    def _upload(self, index: int, link: Path) -> None:
        from huggingface_hub import CommitOperationAdd
        try:
            op = CommitOperationAdd(path_in_repo=f"{DATA}/{link.name}", path_or_fileobj=str(link))
            digest, size = op.upload_info.sha256.hex(), op.upload_info.size
            if self.uploaded.get(digest) == size:
                self.skipped += 1
                return
            HUB.retry(f"upload of data file {index}", lambda: self.api.preupload_lfs_files(
                self.repo_id, [op], repo_type="dataset"))
            with self._lock:
                self.uploaded[digest] = size
                atomic_write(self.record, json.dumps({"repo_id": self.repo_id, "files": self.uploaded},
                                                     indent=1, sort_keys=True) + "\n")
                self.sent += 1
            if self._signal_at and self._signal_at[1] == index:
                os.kill(os.getpid(), self._signal_at[0])
        except Exception as e:  # the final publish sends what is missing, and reports for good
            self.failed += 1
            reporter.info(f"upload of data file {index} failed ({HUB.describe(e)}); the publish at the end will"
                          " send it")
        finally:
            link.unlink(missing_ok=True)

    def finish(self) -> None:
        """Wait for the uploads in flight."""
        for future in self._futures:
            future.result()
        self._pool.shutdown(wait=True)
        reporter.info(f"uploads: {self.sent} data file(s) sent while building, {self.skipped} already there"
                      + (f", {self.failed} failed" if self.failed else ""))

    def abandon(self) -> None:
        """The build failed: stop after the upload in progress (what finished stays recorded)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _test_signal() -> tuple[int, int] | None:
    """SYNTHVLM_TEST_SIGNAL=SIG@upload:N parsed as (signal number, data file index)."""
    name, _, where = (setting("SYNTHVLM_TEST_SIGNAL") or "").partition("@")
    if not where.startswith("upload:"):
        return None
    return int(getattr(signal, f"SIG{name.upper()}")), int(where[len("upload:"):])
