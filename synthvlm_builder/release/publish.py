"""Publish a finished build to the Hub: one commit holding the dir, then tag `v<version>`.

    create_repo(exist_ok) -> refs: is v<version> tagged?
      yes, same identity      -> "already published", exit 0, nothing written
      yes, other identity     -> InputError (exit 2), nothing written
      no -> a commit on main carrying this release's marker?  (landed, tag lost)
              yes -> tag it
              no  -> ONE create_commit (the files the build's manifest lists, nothing else in
                     the dir; deleting data/ files the build no longer has), then tag it

Same data means the same identity (the recipe fingerprint joined with its input files' digests,
recorded in recipe.lock.json). The commit description ends with the trailer
`Synthvlm-Release: <name> v<version> <identity>`;
that marker is how a rerun, or a retry after a lost response, recognises a commit that already
landed, so no fault ever produces a second commit or a tag on other data. Calls the client does
not retry itself (create_repo, repo_info, list_repo_refs, create_commit, create_tag) are retried
here on transient errors (retry.py HUB: the Hub's retryable errors, exponential backoff); the
commit is retried against its original parent (`parent_commit`) and only after checking that it
did not land. The token comes from huggingface_hub's usual sources and is never read or printed here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .. import reporter
from ..errors import BuildError, InputError
from . import staged
from ..layout import LOCK, REBUILD, load_manifest, release_files, upload_paths
from ..retry import HUB
from .lock import read_lock

MARKER = "Synthvlm-Release"
AUTH_HINT = "set HF_TOKEN or run `hf auth login` with a token that can write to the repository"


@dataclass
class PublishResult:
    repo_id: str
    url: str
    tag: str
    commit: str
    fingerprint: str
    action: str  # "published" | "tagged" (commit had landed earlier) | "exists" (nothing to do)

    @property
    def repo(self) -> str:
        return self.repo_id

    def summary(self) -> str:
        """What `synthvlm-build publish` prints: what happened, where, and how to load it."""
        head = (f"{self.tag} is already published (fingerprint {self.fingerprint[:12]}): nothing to do"
                if self.action == "exists" else
                f"published {self.repo_id} {self.tag} (fingerprint {self.fingerprint[:12]})")
        return (f"{head}\n  repo:   {self.url}\n  commit: {self.commit}\n  tag:    {self.tag}\nload it with:\n"
                f"  from datasets import load_dataset; ds = load_dataset({self.repo_id!r}, revision={self.tag!r},"
                " split='train')")


def release_marker(name: str, version: str, fingerprint: str) -> str:
    return f"{MARKER}: {name} v{version} {fingerprint}"


def publish(build_dir: Path, repo_id: Optional[str] = None, changes: Optional[Callable] = None) -> PublishResult:
    """`changes(build_dir, repo_id, version, tags)`, when given, runs just before a new release is committed,
    with the repository's tags: api.py passes analysis/changes.py's, which adds "Changes since vY" to the card."""
    build_dir = Path(build_dir)
    release_files(build_dir)  # exit 2 unless a trustworthy manifest lists a finished build: only its files are sent
    lock = read_lock(build_dir)
    recipe, fp = lock["recipe"], lock["fingerprint"]
    identity = lock.get("identity") or fp  # the recipe and what its input files contained
    _check_lock_is_the_builds(build_dir, lock)
    settings = recipe.get("publish") or {}
    field = "--repo-id" if repo_id else "publish.repo_id"
    repo_id = repo_id or settings.get("repo_id")
    check_destination(repo_id, field)
    from huggingface_hub import HfApi
    try:
        return _publish(HfApi(), build_dir, repo_id, settings.get("private") is not False, recipe["name"],
                        recipe["version"], fp, identity, changes)
    except (*HUB.transport_errors(), OSError) as e:  # HfHubHTTPError, transport errors, offline mode
        raise BuildError(explain(e, repo_id)) from e


def _check_lock_is_the_builds(build_dir: Path, lock: dict) -> None:
    """The lock names the build the manifest records (a lock copied in or edited would tag other data)."""
    manifest = load_manifest(build_dir)
    key = "identity" if lock.get("identity") is not None else "fingerprint"
    if lock.get(key) != manifest[key]:
        raise InputError("DIR", f"{build_dir / LOCK} records {key} {str(lock.get(key))[:12]}, but the build in the"
                         f" dir is {manifest[key][:12]} (its manifest): the lock was changed; {REBUILD}")


def check_destination(repo_id: Optional[str], field: str) -> None:
    """A repository named and well formed, and a token to write with (checked before any request)."""
    if not repo_id:
        raise InputError("publish.repo_id", "no repository to publish to: pass --repo-id ORG/NAME or set"
                         " publish.repo_id in the recipe")
    _check_repo_id(repo_id, field)
    from huggingface_hub import get_token
    if not get_token():
        raise BuildError(f"authentication required to publish to {repo_id}: {AUTH_HINT}")


def _check_repo_id(repo_id: str, field: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(repo_id)
        ok = repo_id.count("/") == 1
    except HFValidationError:
        ok = False
    if not ok:
        raise InputError(field, f"{repo_id!r} is not a Hub repository id (expected ORG/NAME)")


def _publish(api, build_dir: Path, repo_id: str, private: bool, name: str, version: str,
             fp: str, identity: str, changes: Optional[Callable] = None) -> PublishResult:
    tag = f"v{version}"
    url = str(HUB.retry("create_repo", lambda: api.create_repo(repo_id, repo_type="dataset", private=private,
                                                            exist_ok=True)))
    info = HUB.retry("repo_info", lambda: api.repo_info(repo_id, repo_type="dataset"))
    if info.private is not None and bool(info.private) != private:
        reporter.note(f"{repo_id} exists and is {'private' if info.private else 'public'}; the recipe asks for"
                      f" {'private' if private else 'public'}, the visibility is left as it is")
    refs = HUB.retry("list_repo_refs", lambda: api.list_repo_refs(repo_id, repo_type="dataset"))
    tags = {t.name: t.target_commit for t in refs.tags}
    if tag in tags:
        check_tagged(api, repo_id, tag, fp, identity)
        if any(b.name == staged.branch_name(version) for b in refs.branches):  # main's update was cut short
            title, body = _message(name, version, fp, repo_id, release_marker(name, version, identity))
            staged.update_main(api, build_dir, repo_id, version, title, body, release_marker(name, version, identity))
        return PublishResult(repo_id, url, tag, tags[tag], fp, "exists")

    marker = release_marker(name, version, identity)
    landed = _find_release(api, repo_id, marker)
    if landed:
        reporter.info(f"found commit {landed[:12]} of this release on main (its tag was never created); tagging it")
        action = "tagged"
    else:
        head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
        if changes is not None:  # the card says what changed since the previous release, before it is committed
            changes(build_dir, repo_id, version, sorted(tags))
        if len(upload_paths(build_dir)) > staged.files_per_commit():  # staged.py: a release branch, then main
            title, body = _message(name, version, fp, repo_id, marker)
            landed = staged.commit_on_branch(api, build_dir, repo_id, version, title, body, marker, head)
        else:
            landed = _commit(api, build_dir, repo_id, name, version, fp, marker, head)
        action = "published"
    is_staged = action == "published" and len(upload_paths(build_dir)) > staged.files_per_commit()
    _tag(api, repo_id, tag, landed, f"{name} {tag} (fingerprint {fp})",
         where=staged.branch_name(version) if is_staged else "main")
    if is_staged:
        title, body = _message(name, version, fp, repo_id, marker)
        staged.update_main(api, build_dir, repo_id, version, title, body, marker)
    return PublishResult(repo_id, url, tag, landed, fp, action)


def check_tagged(api, repo_id: str, tag: str, fp: str, identity: str) -> None:
    """`tag` exists: fine if it holds this identity, bad input (bump the version) otherwise."""
    remote_fp, remote_identity = _tagged_identity(api, repo_id, tag)
    if remote_identity != identity:
        why = ("the recipe is the same but its input files differ" if remote_fp == fp else
               f"this build has fingerprint {fp[:12]}")
        raise InputError("version", f"{tag} is already published with fingerprint {remote_fp[:12]} (identity"
                         f" {remote_identity[:12]}); {why} (identity {identity[:12]}): bump `version`")


def _tagged_identity(api, repo_id: str, tag: str) -> tuple[str, str]:
    """The (fingerprint, identity) of the release a tag points at; a lock without an identity (an
    older build) is identified by its fingerprint."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    try:
        path = HUB.retry("download recipe.lock.json", lambda: api.hf_hub_download(
            repo_id, LOCK, repo_type="dataset", revision=tag))
        lock = json.loads(Path(path).read_text())
        return str(lock["fingerprint"]), str(lock.get("identity") or lock["fingerprint"])
    except (EntryNotFoundError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        if isinstance(e, LocalEntryNotFoundError):  # the Hub was unreachable: not an answer about the tag
            raise
        raise InputError("version", f"{tag} already exists on {repo_id} and holds no synthvlm build"
                         " (no readable recipe.lock.json); bump `version`") from None


def _find_release(api, repo_id: str, marker: str) -> Optional[str]:
    """The newest commit on main whose message carries `marker`, or None."""
    commits = HUB.retry("list_repo_commits", lambda: api.list_repo_commits(repo_id, repo_type="dataset"))
    for c in commits:
        if marker in (c.message or "").splitlines() or marker in (c.title or ""):
            return c.commit_id
    return None


def _commit(api, build_dir: Path, repo_id: str, name: str, version: str, fp: str, marker: str,
            parent: Optional[str]) -> str:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError
    local = upload_paths(build_dir)
    remote = HUB.retry("list_repo_files", lambda: api.list_repo_files(repo_id, repo_type="dataset", revision=parent))
    stale = sorted(p for p in remote if p.startswith("data/") and p not in set(local))
    if stale:
        reporter.info(f"removing {len(stale)} data file(s) of an earlier release from main: {', '.join(stale)}")
    title, body = _message(name, version, fp, repo_id, marker)

    def attempt() -> str:  # fresh operations each time: the client marks them as it uploads
        ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(build_dir / p)) for p in local]
        ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
        return api.create_commit(repo_id, ops, commit_message=title, commit_description=body,
                                 repo_type="dataset", revision="main", parent_commit=parent).oid

    reporter.info(f"pushing {len(local)} files to {repo_id} in one commit")
    try:
        return HUB.retry("create_commit", attempt, landed=lambda: _find_release(api, repo_id, marker))
    except ValueError as e:  # the client checks the card with /api/validate-yaml before any upload
        if isinstance(e, HfHubHTTPError):
            raise
        raise BuildError(f"the Hub rejected the dataset card: {' '.join(str(e).split())}; nothing was pushed"
                         " (README.md is made by the build: report this as a bug)") from e
    except HfHubHTTPError as e:
        if e.response is None or e.response.status_code != 412:
            raise
        found = _find_release(api, repo_id, marker)
        if found:
            return found
        raise BuildError(f"main of {repo_id} moved while publishing (another push?); nothing was tagged;"
                         " rerun the same command") from e


def _message(name: str, version: str, fp: str, repo_id: str, marker: str) -> tuple[str, str]:
    """The release commit's title and description, the marker as its last line."""
    return (f"Release {name} v{version} (fingerprint {fp[:12]})",
            f"{name} v{version} built by synthvlm-builder; data fingerprint {fp}.\n"
            f"Load it with load_dataset({repo_id!r}, revision='v{version}').\n\n{marker}\n")


def _tag(api, repo_id: str, tag: str, sha: str, message: str, where: str = "main") -> None:
    def tagged() -> Optional[bool]:
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
        target = next((t.target_commit for t in refs.tags if t.name == tag), None)
        if target is not None and target != sha:
            raise BuildError(f"{tag} was created on {repo_id} by someone else meanwhile (commit {target[:12]});"
                             f" this release's commit {sha[:12]} stays untagged")
        return True if target == sha else None

    try:
        HUB.retry("create_tag", lambda: api.create_tag(repo_id, tag=tag, tag_message=message, revision=sha,
                                                     repo_type="dataset"), landed=tagged)
    except BuildError:
        raise
    except Exception as e:
        if getattr(getattr(e, "response", None), "status_code", None) == 409 and tagged():
            return  # an earlier try created it and its answer was lost
        if not HUB.transient(e):
            raise
        raise BuildError(f"commit {sha[:12]} is on {where} of {repo_id} but creating tag {tag} failed:"
                         f" {HUB.describe(e)}; rerun the same command to tag it") from e


# --- messages ----------------------------------------------------------------------------------------

def explain(e: BaseException, repo_id: str) -> str:
    from huggingface_hub.errors import (BadRequestError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError)
    if isinstance(e, LocalEntryNotFoundError) and e.__cause__ is not None:  # hf_hub_download's HEAD failed
        return explain(e.__cause__, repo_id)
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set; publishing needs the Hub (unset it)"
    if status == 401 or (isinstance(e, RepositoryNotFoundError) and status in (401, None)):
        return (f"authentication required to publish to {repo_id}: the Hub refused the token ({HUB.describe(e)});"
                f" {AUTH_HINT}")
    if isinstance(e, RepositoryNotFoundError) or status == 404:
        return f"dataset repository {repo_id} not found or not accessible with this token; {AUTH_HINT}"
    if status == 403:
        return f"no write access to {repo_id} ({HUB.describe(e)}); {AUTH_HINT}"
    if isinstance(e, BadRequestError):
        return f"the Hub rejected the upload to {repo_id}: {HUB.describe(e)}"
    if isinstance(e, HfHubHTTPError):
        return f"publishing to {repo_id} failed: {HUB.describe(e)}; nothing was tagged; rerun the same command"
    if isinstance(e, OSError):  # a local file, the cache
        return f"publishing to {repo_id} failed: {HUB.describe(e)}"
    return (f"cannot reach the Hub for {repo_id}: {HUB.describe(e)}; nothing was tagged; check HF_ENDPOINT and"
            " the network, then rerun the same command")
