"""Releases with more files than one commit should carry (the Hub recommends under ~100 per commit).

    branch synthvlm-release-v<version>, from main's head   (created, or taken up again on a rerun)
      commit: files 1..N              each commit at most files_per_commit() files; files the branch
      commit: files N+1..2N           already holds with the same content are not sent again
      ...
      commit: the rest, the card last, carrying the release marker (publish.py)   <- tagged v<version>
    main: one commit giving it the release's tree, made only after the tag exists
    the branch is deleted: its absence is what says the release is complete

The tag never points at a half release: the card, the lock and the release marker are in the last
commit only, and the tag is created on it. main is changed only once the tagged release is complete,
in one commit (the Hub's commit API cannot move a branch to another branch's commit; the files are
all in LFS storage and on the branch by then, so that commit carries references only). A rerun after a
failure at any step continues from what the Hub holds.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from .. import reporter
from ..layout import CARD, LOCK, upload_paths
from ..retry import HUB
from ..settings import setting

FILES_PER_COMMIT = 100  # the Hub's recommendation; SYNTHVLM_PUBLISH_FILES_PER_COMMIT overrides it
LAST = (LOCK, CARD)     # what makes the branch a release: in its final commit, the card last


def files_per_commit() -> int:
    return setting("SYNTHVLM_PUBLISH_FILES_PER_COMMIT", FILES_PER_COMMIT)


def branch_name(version: str) -> str:
    return f"synthvlm-release-v{version}"


def part_marker(marker: str) -> str:
    """The trailer of the branch's intermediate commits: which release they belong to."""
    return marker.replace("Synthvlm-Release:", "Synthvlm-Release-Part:", 1)


def _same(remote, path: Path) -> bool:
    """Whether a file on the Hub (RepoFile) has the content of a local file."""
    if remote is None or remote.size != path.stat().st_size:
        return False
    if remote.lfs is not None:
        from ..atomic import sha256_file
        return remote.lfs.sha256 == sha256_file(path)
    data = path.read_bytes()
    return remote.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _files(api, repo_id: str, revision: str) -> dict:
    from huggingface_hub.hf_api import RepoFile
    tree = HUB.retry("list_repo_tree", lambda: list(api.list_repo_tree(repo_id, recursive=True, repo_type="dataset",
                                                                   revision=revision)))
    return {f.path: f for f in tree if isinstance(f, RepoFile)}


def _head(api, repo_id: str, branch: str) -> Optional[str]:
    refs = HUB.retry("list_repo_refs", lambda: api.list_repo_refs(repo_id, repo_type="dataset"))
    return next((b.target_commit for b in refs.branches if b.name == branch), None)


def commit_on_branch(api, build_dir: Path, repo_id: str, version: str, title: str, body: str, marker: str,
                     main_head: Optional[str]) -> str:
    """Build the release on its branch in commits of at most files_per_commit() files; return the sha of
    the last one (the one to tag)."""
    branch = branch_name(version)
    head = _head(api, repo_id, branch)
    if head is not None:
        tip = HUB.retry("list_repo_commits", lambda: api.list_repo_commits(repo_id, repo_type="dataset",
                                                                       revision=branch))[0]
        ours = part_marker(marker) in (tip.message or "") or marker in (tip.message or "")
        if not ours:  # an unfinished release of other data under this version: never tagged, so it goes
            reporter.info(f"{branch} holds an unfinished release of other data; starting it over")
            HUB.retry("delete_branch", lambda: api.delete_branch(repo_id, branch=branch, repo_type="dataset"))
            head = None
        elif marker in (tip.message or ""):
            return tip.commit_id  # complete already: only the tag (and main) were missing
    if head is None:
        HUB.retry("create_branch", lambda: api.create_branch(repo_id, branch=branch, revision=main_head,
                                                         repo_type="dataset", exist_ok=True))
    remote = _files(api, repo_id, branch)
    local = upload_paths(build_dir)
    todo = [p for p in local if p not in LAST and not _same(remote.get(p), build_dir / p)]
    stale = sorted(p for p in remote if p.startswith("data/") and p not in set(local))
    per = files_per_commit()
    final = [p for p in LAST if p in local]
    ops = [("add", p) for p in todo] + [("delete", p) for p in stale]
    n_parts = -(-max(0, len(ops) + len(final) - per) // per)  # commits before the final one
    reporter.info(f"{len(local)} files, {len(ops) + len(final)} to commit: {n_parts + 1} commit(s) of at most {per}"
                  f" files on {branch}, then the tag, then main")
    for k in range(n_parts):
        batch, ops = ops[:per], ops[per:]
        _commit(api, repo_id, branch, build_dir, batch, f"{title}: part {k + 1} of {n_parts + 1}",
                f"{body.split(marker)[0]}{part_marker(marker)}\n")
    return _commit(api, repo_id, branch, build_dir, ops + [("add", p) for p in final], title, body)


def _commit(api, repo_id: str, branch: str, build_dir: Path, ops: list, title: str, body: str) -> str:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    parent = _head(api, repo_id, branch)

    def landed() -> Optional[str]:  # a lost response: the branch moved to a commit of this title
        tip = api.list_repo_commits(repo_id, repo_type="dataset", revision=branch)[0]
        return tip.commit_id if tip.commit_id != parent and tip.title == title else None

    def attempt() -> str:
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(build_dir / p)) if kind == "add"
                      else CommitOperationDelete(path_in_repo=p) for kind, p in ops]
        return api.create_commit(repo_id, operations, commit_message=title, commit_description=body,
                                 repo_type="dataset", revision=branch, parent_commit=parent).oid

    return HUB.retry(f"create_commit on {branch}", attempt, landed=landed)


def update_main(api, build_dir: Path, repo_id: str, version: str, title: str, body: str, marker: str) -> None:
    """After the tag: main gets the release's tree in one commit (if it has not already), then the branch
    goes. main is left alone if it moved since the release began (another release was pushed)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    branch = branch_name(version)
    if _head(api, repo_id, branch) is None:
        return  # complete
    commits = HUB.retry("list_repo_commits", lambda: api.list_repo_commits(repo_id, repo_type="dataset"))
    if not any(marker in (c.message or "") for c in commits):
        history = HUB.retry("list_repo_commits", lambda: api.list_repo_commits(repo_id, repo_type="dataset",
                                                                          revision=branch))
        base = next((c.commit_id for c in history if not (marker in (c.message or "") or part_marker(marker)
                                                          in (c.message or ""))), None)
        main_head = commits[0].commit_id
        if base != main_head:
            reporter.info(f"main of {repo_id} moved since this release began (another push?); it is left as it is")
        else:
            local = upload_paths(build_dir)
            stale = sorted(p for p in _files(api, repo_id, "main") if p.startswith("data/") and p not in set(local))
            reporter.info(f"updating main to the release: {len(local)} files (already stored) in one commit")

            def attempt() -> str:
                ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(build_dir / p)) for p in local]
                ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
                return api.create_commit(repo_id, ops, commit_message=title, commit_description=body,
                                         repo_type="dataset", revision="main", parent_commit=main_head).oid

            def landed() -> Optional[str]:
                tip = api.list_repo_commits(repo_id, repo_type="dataset")[0]
                return tip.commit_id if marker in (tip.message or "") else None

            HUB.retry("create_commit on main", attempt, landed=landed)
    HUB.retry("delete_branch", lambda: api.delete_branch(repo_id, branch=branch, repo_type="dataset"))
