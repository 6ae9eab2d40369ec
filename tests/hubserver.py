"""A Hugging Face Hub-compatible HTTP server for tests (stdlib + PyYAML).

The real ``huggingface_hub`` and ``datasets`` clients talk to it through
``HF_ENDPOINT=<server.url>``. It exists to prove that our publishing is trustworthy,
so it behaves like the Hub where the clients can tell the difference:

* git-like storage: every commit has a real git sha (tree and commit objects are
  hashed the way git hashes them), a parent, an author, a date and a full tree;
  LFS files are stored by their sha256 oid; commits are atomic.
* the same status codes and ``X-Error-Code`` headers the Hub sends, so the client
  raises ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` / ``EntryNotFoundError``.
* private repos, tokens, 409 on existing repos/tags/branches, 412 on a stale
  ``parentCommit``, README metadata validation on ``/api/validate-yaml`` and on commit.
* fault injection (``fail_next`` / ``drop_next``) and a request log, to observe what
  the clients do when the Hub misbehaves.

Everything lives in memory except blob contents, which are written to ``root_dir``
by sha256. The wire formats were taken from huggingface_hub 2.4 (``hf_api.py``,
``_commit_api.py``, ``lfs.py``, ``file_download.py``, ``utils/_http.py``).

PyYAML is the one non-stdlib import: validating card metadata needs a YAML parser,
and PyYAML is already a dependency of huggingface_hub, datasets and this project.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import socket
import sys
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlencode

import yaml

__all__ = ["HubServer", "HubError"]

# The Hub refuses non-LFS files above 10 MB; above this size preupload answers "lfs".
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

_LFS_ATTR = " filter=lfs diff=lfs merge=lfs -text\n"
_MODEL_LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack "
    "*.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors "
    "saved_model/**/* *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
).split()
_DATASET_EXTRA_PATTERNS = (
    "*.lz4 *.mds *.pcm *.sam *.raw *.aac *.flac *.mp3 *.ogg *.wav "
    "*.bmp *.gif *.png *.tiff *.jpg *.jpeg *.webp *.mp4 *.webm"
).split()
# What the Hub writes in the "initial commit" of a new repo.
DEFAULT_GITATTRIBUTES = {
    "model": "".join(p + _LFS_ATTR for p in _MODEL_LFS_PATTERNS),
    "dataset": "".join(p + _LFS_ATTR for p in _MODEL_LFS_PATTERNS + _DATASET_EXTRA_PATTERNS),
}

_SPECIAL_REF = re.compile(r"^refs/(?:pr|convert|heads|tags)/[^/]+")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_hash(kind: str, body: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).hexdigest()


def _lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


# --------------------------------------------------------------------------- data model
@dataclass(frozen=True)
class Entry:
    """One file of a tree. ``sha256`` keys the blob store for LFS and regular files alike."""

    sha256: str
    size: int
    lfs: bool
    git_oid: str  # sha1 of the git blob: the content, or the LFS pointer for LFS files

    def to_api(self, path: str) -> dict:
        info: dict[str, Any] = {"type": "file", "oid": self.git_oid, "size": self.size, "path": path}
        if self.lfs:
            pointer_size = len(_lfs_pointer(self.sha256, self.size))
            info["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": pointer_size}
        return info

    @property
    def etag(self) -> str:
        # The client caches by etag: sha256 for LFS files, git blob sha1 otherwise.
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Commit:
    sha: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: str
    tree: dict[str, Entry]
    _dir_oids: dict[str, str] | None = field(default=None, repr=False)

    def dir_oids(self) -> dict[str, str]:
        """Git tree oid of every directory ("" is the root), computed once."""
        if self._dir_oids is None:
            self._dir_oids = _hash_trees(self.tree)
        return self._dir_oids


@dataclass
class Repo:
    repo_type: str  # "model" | "dataset"
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_oids: dict[str, int] = field(default_factory=dict)  # LFS objects uploaded to this repo: oid -> size
    uid: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def url_prefix(self) -> str:
        return "" if self.repo_type == "model" else f"{self.repo_type}s/"


def _hash_trees(tree: dict[str, Entry]) -> dict[str, str]:
    children: dict[str, dict[str, tuple[str, str]]] = {"": {}}  # dir -> name -> (mode, oid)
    for path in tree:
        parts = path.split("/")
        for i in range(1, len(parts)):
            children.setdefault("/".join(parts[:i]), {})
    for path, entry in tree.items():
        parent, _, name = path.rpartition("/")
        children[parent][name] = ("100644", entry.git_oid)
    oids: dict[str, str] = {}
    for d in sorted(children, key=lambda p: -p.count("/") - (p != "")):  # deepest first, root last
        items = children[d]
        # git sorts directory names as if they ended with "/"
        body = b"".join(
            f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)
            for name, (mode, oid) in sorted(items.items(), key=lambda kv: kv[0] + ("/" if kv[1][0] == "40000" else ""))
        )
        oids[d] = _git_hash("tree", body)
        if d:
            parent, _, name = d.rpartition("/")
            children[parent][name] = ("40000", oids[d])
    return oids


class HubError(Exception):
    """An HTTP error answered the way the Hub answers it (JSON body + X-Error-* headers)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})


def _repo_not_found(user: str | None) -> HubError:
    # The Hub does not reveal whether a repo exists: anonymous callers get 401, others 404.
    if user is None:
        return HubError(401, "Invalid username or password.", "RepoNotFound")
    return HubError(404, "Repository not found", "RepoNotFound")


# --------------------------------------------------------------------------- pattern matching
def _wildmatch(pattern: str, path: str) -> bool:
    """Git-style matching for .gitattributes/.gitignore: slash-less patterns match the basename."""
    pattern = pattern.strip()
    if pattern.endswith("/"):  # a directory pattern matches everything below it
        return _wildmatch(pattern + "**", path) or _wildmatch("**/" + pattern + "**", path)
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    regex = ""
    for token in re.split(r"(\*\*/|/\*\*|\*|\?)", pattern.lstrip("/")):
        regex += {"**/": "(?:.*/)?", "/**": "(?:/.*)?", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.fullmatch(regex, path) is not None


def _lfs_patterns(gitattributes: bytes) -> list[str]:
    patterns = []
    for line in gitattributes.decode(errors="replace").splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _is_ignored(gitignore: str | None, path: str) -> bool:
    ignored = False
    for line in (gitignore or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if _wildmatch(line[1:] if negate else line, path):
            ignored = not negate
    return ignored


def _looks_binary(sample: bytes) -> bool:
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:  # a multi-byte character cut by the 512-byte sample is fine
        return e.start < len(sample) - 3
    return False


# --------------------------------------------------------------------------- card metadata
def _split_front_matter(content: str) -> str | None:
    match = re.match(r"^\s*---\s*\n(.*?)\n---\s*(?:\n|$)", content, flags=re.DOTALL)
    return match.group(1) if match else None


def _is_str_or_str_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def validate_card_metadata(content: str, repo_type: str) -> tuple[list[str], list[str], dict | None]:
    """Validate a README's YAML header like the Hub does. Returns (errors, warnings, metadata)."""
    raw = _split_front_matter(content)
    if raw is None or not raw.strip():
        return [], ["empty or missing yaml metadata in repo card"], None
    try:
        meta = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        return [f"Error parsing YAML metadata: {e}"], [], None
    if not isinstance(meta, dict):
        return ["YAML metadata must be a mapping (key: value pairs)"], [], None
    errors: list[str] = []
    for key in ("license", "language", "tags", "task_categories", "size_categories", "base_model"):
        if key in meta and meta[key] is not None and not _is_str_or_str_list(meta[key]):
            errors.append(f'"{key}" must be a string or a list of strings')
    for key in ("pretty_name", "library_name", "pipeline_tag", "license_name", "license_link"):
        if key in meta and not isinstance(meta[key], str):
            errors.append(f'"{key}" must be a string')
    if repo_type != "dataset":  # configs and dataset_info are dataset-card fields
        return errors, [], meta
    if "configs" in meta:
        errors += _validate_configs(meta["configs"])
    if "dataset_info" in meta:
        infos = meta["dataset_info"]
        for i, info in enumerate(infos if isinstance(infos, list) else [infos]):
            errors += _validate_dataset_info(info, f"dataset_info[{i}]" if isinstance(infos, list) else "dataset_info")
    return errors, [], meta


def _validate_configs(configs: Any) -> list[str]:
    if not isinstance(configs, list):
        return ['"configs" must be a list']
    errors, names = [], set()
    for i, config in enumerate(configs):
        where = f"configs[{i}]"
        if not isinstance(config, dict):
            errors.append(f'"{where}" must be a mapping')
            continue
        name = config.get("config_name")
        if not isinstance(name, str) or not name:
            errors.append(f'"{where}.config_name" is required and must be a string')
        elif name in names:
            errors.append(f'"{where}.config_name" {name!r} is duplicated')
        names.add(name)
        if "default" in config and not isinstance(config["default"], bool):
            errors.append(f'"{where}.default" must be a boolean')
        if "data_dir" in config and not isinstance(config["data_dir"], str):
            errors.append(f'"{where}.data_dir" must be a string')
        files = config.get("data_files")
        if files is None:
            if "data_dir" not in config:
                errors.append(f'"{where}.data_files" is required')
        elif not _is_str_or_str_list(files) and not (isinstance(files, list) and all(
            isinstance(f, dict) and isinstance(f.get("split"), str) and _is_str_or_str_list(f.get("path"))
            for f in files
        )):
            errors.append(f'"{where}.data_files" must be a string, a list of strings or a list of {{split, path}}')
    return errors


def _validate_dataset_info(info: Any, where: str) -> list[str]:
    if not isinstance(info, dict):
        return [f'"{where}" must be a mapping']
    errors = []
    if "features" in info and not isinstance(info["features"], (list, dict)):
        errors.append(f'"{where}.features" must be a list')
    for key in ("download_size", "dataset_size"):
        if key in info and not isinstance(info[key], int):
            errors.append(f'"{where}.{key}" must be an integer')
    splits = info.get("splits", [])
    if not isinstance(splits, list):
        errors.append(f'"{where}.splits" must be a list')
        splits = []
    for j, split in enumerate(splits):
        if not isinstance(split, dict) or not isinstance(split.get("name"), str):
            errors.append(f'"{where}.splits[{j}].name" must be a string')
        elif any(k in split and not isinstance(split[k], int) for k in ("num_bytes", "num_examples")):
            errors.append(f'"{where}.splits[{j}]" num_bytes/num_examples must be integers')
    return errors


# --------------------------------------------------------------------------- faults
@dataclass
class _Fault:
    pattern: re.Pattern
    method: str | None
    remaining: int
    status: int | None  # None means: drop the connection without a response
    after: bool  # True: process the request (state changes!), then lose the response
    skip: int = 0  # matching requests to let through before the fault starts

    def matches(self, method: str, path: str) -> bool:
        return self.remaining > 0 and (self.method is None or self.method == method) and bool(self.pattern.search(path))


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: tuple[Path, int, int] | None = None  # (blob path, offset, length) streamed instead of body


def _json(data: Any, status: int = 200, headers: dict | None = None) -> _Response:
    return _Response(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


# --------------------------------------------------------------------------- the server
class HubServer:
    """In-process Hub on 127.0.0.1 with a random free port, served from a background thread.

    ``tokens`` maps ``"hf_..."`` tokens to usernames. ``orgs`` maps an organization to its
    members; when it is None, any namespace that is not a username is an org every
    authenticated user belongs to (handy for ``org/name`` repos in tests).
    """

    def __init__(self, root_dir: str | os.PathLike, tokens: dict[str, str] | None = None,
                 orgs: dict[str, Any] | None = None):
        self.root = Path(root_dir)
        self._blobs = self.root / "blobs"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self.tokens = dict(tokens or {})
        self.orgs = None if orgs is None else {k: set(v) for k, v in orgs.items()}
        self.tree_page_size = 1000  # the Hub's page sizes; tests lower them to exercise pagination
        self.tree_page_size_expanded = 50
        self.commits_page_size = 50
        self.log: list[tuple[str, str, int | None]] = []
        self.unhandled: list[tuple[str, str]] = []  # requests no route knew: add a route for them
        self.errors: list[str] = []  # server bugs (answered 500, which clients may silently retry)
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._faults: list[_Fault] = []
        self._secret = secrets.token_bytes(16)  # signs LFS upload URLs, like presigned S3 URLs
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.url = ""

    # ----- lifecycle
    def start(self) -> "HubServer":
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.hub = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:  # idle keep-alive connections would otherwise pin handler threads
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client_env(self, home: str | os.PathLike, token: str | None = None,
                   base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a client process (huggingface_hub/datasets read these at import time).

        Drops any HF_* variables inherited from ``base`` (os.environ by default) so a developer's real
        token or cache never leaks in; ``home`` gets the fresh HF_HOME and datasets cache.
        """
        env = {k: v for k, v in (os.environ if base is None else base).items()
               if not k.startswith(("HF_", "HUGGING_FACE"))}
        env.update(HF_ENDPOINT=self.url, HF_HUB_DISABLE_XET="1", HF_UPDATE_DOWNLOAD_COUNTS="0",
                   HF_HOME=str(Path(home) / "hf_home"), HF_DATASETS_CACHE=str(Path(home) / "datasets"),
                   HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    # ----- fault injection and observability
    def fail_next(self, pattern: str, status: int = 500, count: int = 1, method: str | None = None,
                  after: bool = False, skip: int = 0) -> None:
        """The next ``count`` requests whose path matches ``pattern`` (re.search) answer ``status``,
        after ``skip`` matching requests have gone through normally.

        With ``after=True`` the request is processed first (a commit is applied!) and only the
        response is replaced: the "it worked but the client saw an error" case.
        """
        with self._lock:
            self._faults.append(_Fault(re.compile(pattern), method, count, status, after, skip))

    def drop_next(self, pattern: str, count: int = 1, method: str | None = None, after: bool = False) -> None:
        """Like ``fail_next`` but the socket is closed without any response."""
        with self._lock:
            self._faults.append(_Fault(re.compile(pattern), method, count, None, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.skip:
                        fault.skip -= 1
                        return None
                    fault.remaining -= 1
                    return fault
        return None

    def requests(self, pattern: str = "", method: str | None = None) -> list[tuple[str, str, int | None]]:
        """Log entries whose path matches ``pattern`` (and method)."""
        with self._lock:
            return [e for e in self.log if re.search(pattern, e[1]) and (method is None or e[0] == method)]

    def commits(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> list[dict]:
        """Commits reachable from ``revision``, newest first, with their full trees."""
        with self._lock:
            repo = self._repo_or_raise(repo_type, repo_id)
            return [
                {"id": c.sha, "parents": list(c.parents), "title": c.title, "message": c.message,
                 "author": c.author, "date": c.date,
                 "files": {p: {"size": e.size, "lfs": e.lfs, "sha256": e.sha256, "oid": e.git_oid}
                           for p, e in sorted(c.tree.items())}}
                for c in self._history(repo, self._resolve(repo, revision).sha)
            ]

    def refs(self, repo_id: str, repo_type: str = "dataset") -> dict[str, dict[str, str]]:
        with self._lock:
            repo = self._repo_or_raise(repo_type, repo_id)
            return {"branches": dict(repo.branches), "tags": dict(repo.tags)}

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> bytes:
        with self._lock:
            entry = self._resolve(self._repo_or_raise(repo_type, repo_id), revision).tree[path]
        return (self._blobs / entry.sha256).read_bytes()

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False,
                    author: str | None = None) -> None:
        """Seed a repo directly (with the Hub's initial commit), without going through HTTP."""
        with self._lock:
            self._create_repo(repo_type, repo_id, private, author or repo_id.split("/")[0])

    # ----- state helpers (call with the lock held)
    def _repo_or_raise(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise KeyError(f"no {repo_type} repo {repo_id!r}")
        return repo

    def _put_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self._blobs / sha256
        if not target.exists():
            tmp = self._blobs / f".{sha256}.{uuid.uuid4().hex}"
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return sha256

    def _regular_entry(self, data: bytes) -> Entry:
        return Entry(self._put_blob(data), len(data), False, _git_hash("blob", data))

    def _create_repo(self, repo_type: str, repo_id: str, private: bool, author: str) -> Repo:
        repo = Repo(repo_type, repo_id, private, _now())
        gitattributes = self._regular_entry(DEFAULT_GITATTRIBUTES[repo_type].encode())
        commit = self._make_commit([], "initial commit", "", author, {".gitattributes": gitattributes})
        repo.commits[commit.sha] = commit
        repo.branches["main"] = commit.sha
        self._repos[(repo_type, repo_id)] = repo
        return repo

    @staticmethod
    def _make_commit(parents: list[str], title: str, message: str, author: str, tree: dict[str, Entry]) -> Commit:
        date = _now()
        root = _hash_trees(tree)[""]
        epoch = int(datetime.strptime(date, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp())
        ident = f"{author} <{author}@users.noreply.huggingface.co> {epoch} +0000"
        text = title + ("\n\n" + message if message else "") + "\n"
        body = f"tree {root}\n" + "".join(f"parent {p}\n" for p in parents)
        body += f"author {ident}\ncommitter {ident}\n\n{text}"
        # As in git, the same tree, parents, message and second give the same sha.
        return Commit(_git_hash("commit", body.encode()), parents, title, message, author, date, tree)

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        """Branch, tag, refs/heads/x, refs/tags/x, full sha or unique sha prefix (>= 7)."""
        rev = revision
        for prefix, refs in (("refs/heads/", repo.branches), ("refs/tags/", repo.tags)):
            if rev.startswith(prefix) and rev[len(prefix):] in refs:
                return repo.commits[refs[rev[len(prefix):]]]
        if rev in repo.branches:
            return repo.commits[repo.branches[rev]]
        if rev in repo.tags:
            return repo.commits[repo.tags[rev]]
        if rev in repo.commits:
            return repo.commits[rev]
        if re.fullmatch(r"[0-9a-f]{7,39}", rev):
            found = [c for sha, c in repo.commits.items() if sha.startswith(rev)]
            if len(found) == 1:
                return found[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _history(self, repo: Repo, sha: str) -> list[Commit]:
        out = []
        while sha:
            commit = repo.commits[sha]
            out.append(commit)
            sha = commit.parents[0] if commit.parents else ""
        return out

    def _last_commit(self, repo: Repo, head: Commit, path: str) -> Commit:
        """Newest commit that changed ``path`` (a file or a directory) in head's history."""
        def state(c: Commit):
            return c.tree[path].git_oid if path in c.tree else c.dir_oids().get(path)

        history = self._history(repo, head.sha)
        for commit, parent in zip(history, history[1:] + [None]):
            if parent is None or state(parent) != state(commit):
                return commit
        return head

    def _user_can_write(self, namespace: str, user: str | None) -> bool:
        if user is None:
            return False
        if user == namespace:
            return True
        if self.orgs is None:
            return namespace not in set(self.tokens.values())
        return user in self.orgs.get(namespace, ())

    def _readable(self, repo: Repo | None, user: str | None) -> bool:
        return repo is not None and (not repo.private or self._user_can_write(repo.repo_id.split("/")[0], user))


# --------------------------------------------------------------------------- HTTP layer
_REPO_TYPES = {"models": "model", "datasets": "dataset"}


@dataclass
class _Request:
    method: str
    path: str  # percent-decoded path without the query string
    raw_path: str  # percent-encoded path, for routing on segments
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    user: str | None

    def q(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, [default])[0]

    def flag(self, name: str) -> bool:
        return (self.q(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HubError(400, "Invalid JSON body") from None


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (or a dropped connection we injected) is not a server bug.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub; every response has a Content-Length
    server_version = "hubserver"
    timeout = 120

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._conns.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._conns.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test log is hub.log
        pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = lambda self: self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self) -> None:
        hub = self.hub
        raw_path, _, query = self.path.partition("?")
        path = unquote(raw_path)
        body = self._read_body()  # always drain the body, even for a fault, to keep the connection sane
        fault = hub._take_fault(self.command, path)
        if fault is not None and not fault.after:
            return self._fault(fault, path)
        try:
            req = _Request(self.command, path, raw_path, parse_qs(query, keep_blank_values=True),
                           self.headers, body, self._authenticate())
            response = _route(hub, req)
        except HubError as e:
            headers = {"X-Error-Message": e.message, **e.headers}
            if e.code:
                headers["X-Error-Code"] = e.code
            response = _json({"error": e.message}, e.status, headers)
        except Exception as e:  # a bug in the server must look like a 500, not a hang
            with hub._lock:
                hub.errors.append(f"{self.command} {path}: {traceback.format_exc()}")
            response = _json({"error": f"hubserver internal error: {e!r}"}, 500)
        if fault is not None:
            return self._fault(fault, path)
        self._send(response, path)

    def _authenticate(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":  # git-lfs style "user:token"
            value = base64.b64decode(value).decode(errors="replace").partition(":")[2]
        elif scheme.lower() != "bearer":
            return None
        user = self.hub.tokens.get(value.strip())
        if user is None:
            # The Hub rejects a bad token outright rather than treating the caller as anonymous.
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _fault(self, fault: _Fault, path: str) -> None:
        with self.hub._lock:
            self.hub.log.append((self.command, path, fault.status))
        if fault.status is None:
            self.close_connection = True  # no bytes at all: the client sees a dropped connection
            return
        self._send(_json({"error": f"Injected failure ({fault.status})"}, fault.status), path, logged=True)

    def _send(self, response: _Response, path: str, logged: bool = False) -> None:
        if not logged:
            with self.hub._lock:
                self.hub.log.append((self.command, path, response.status))
        length = response.file[2] if response.file else len(response.body)
        self.send_response(response.status)
        headers = {"X-Request-Id": uuid.uuid4().hex, **response.headers, "Content-Length": str(length)}
        for key, value in headers.items():
            # Header values must be one latin-1 line (error messages can hold newlines or any character).
            self.send_header(key, " ".join(str(value).splitlines()).encode("latin-1", "replace").decode("latin-1"))
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.file:
            blob, offset, remaining = response.file
            with open(blob, "rb") as f:
                f.seek(offset)
                while remaining > 0:
                    chunk = f.read(min(remaining, 1 << 20))
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        else:
            self.wfile.write(response.body)


# --------------------------------------------------------------------------- routing
Handler = Callable[[HubServer, _Request, dict], _Response]
_ROUTES: list[tuple[str, re.Pattern, Handler]] = []
_REPO_SEG = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"


def route(methods: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for method in methods.split("|"):
            _ROUTES.append((method, re.compile("^" + pattern + "$"), fn))
        return fn
    return register


def _route(hub: HubServer, req: _Request) -> _Response:
    for method, pattern, fn in _ROUTES:
        match = pattern.match(req.raw_path)
        if match and method == req.method:
            params = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
            params["raw"] = match.groupdict()  # still percent-encoded, for rev/path splitting
            return fn(hub, req, params)
    with hub._lock:
        hub.unhandled.append((req.method, req.path))
    raise HubError(404, f"hubserver: no route for {req.method} {req.path}")


def _repo_type(params: dict) -> str:
    plural = params.get("type") or "models"
    if plural not in _REPO_TYPES:
        raise HubError(400, f"hubserver supports models and datasets, not {plural}")
    return _REPO_TYPES[plural]


def _read_repo(hub: HubServer, req: _Request, params: dict) -> Repo:
    repo = hub._repos.get((_repo_type(params), f"{params['ns']}/{params['name']}"))
    if not hub._readable(repo, req.user):
        raise _repo_not_found(req.user)
    return repo  # type: ignore[return-value]


def _write_repo(hub: HubServer, req: _Request, params: dict) -> Repo:
    repo = _read_repo(hub, req, params)
    if req.user is None:
        raise HubError(401, "Invalid username or password.")
    if not hub._user_can_write(params["ns"], req.user):
        raise HubError(403, f"You don't have the rights to write to {repo.repo_id}")
    return repo


def _split_rev_path(rest: str) -> tuple[str, str]:
    """'main/a/b' -> ('main', 'a/b'); unquoted special refs keep their slashes (refs/pr/1/a)."""
    special = _SPECIAL_REF.match(unquote(rest))
    if special and not rest.startswith("refs%2F"):
        rev = special.group(0)
        return rev, unquote(rest)[len(rev):].lstrip("/")
    rev, _, path = rest.partition("/")
    return unquote(rev), unquote(path)


def _repo_url(hub: HubServer, repo: Repo) -> str:
    return f"{hub.url}/{repo.url_prefix}{repo.repo_id}"


# ----- account and misc
@route("GET", r"/api/whoami-v2")
def whoami(hub: HubServer, req: _Request, params: dict) -> _Response:
    if req.user is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    orgs = sorted(o for o, members in (hub.orgs or {}).items() if req.user in members)
    return _json({"type": "user", "id": hashlib.sha1(req.user.encode()).hexdigest()[:24], "name": req.user,
                  "fullname": req.user, "email": f"{req.user}@example.com", "emailVerified": True,
                  "isPro": False, "orgs": [{"type": "org", "name": o} for o in orgs],
                  "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})


@route("GET", r"/api/agent-harnesses")
def agent_harnesses(hub: HubServer, req: _Request, params: dict) -> _Response:
    return _json({"standardEnvVars": [], "harnesses": {}})


@route("POST", r"/api/validate-yaml")
def validate_yaml(hub: HubServer, req: _Request, params: dict) -> _Response:
    payload = req.json()
    if not isinstance(payload.get("content"), str):
        raise HubError(400, '"content" must be a string')
    errors, warnings, _ = validate_card_metadata(payload["content"], payload.get("repoType") or "model")
    if errors and "text/plain" in (req.headers.get("Accept") or ""):  # RepoCard.validate() asks for text
        text = "\n".join(errors).encode()
        return _Response(400, text, {"Content-Type": "text/plain; charset=utf-8"})
    return _json({"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings],
                  **({"error": "Invalid metadata in README.md: " + "; ".join(errors)} if errors else {})},
                 400 if errors else 200)


# ----- repos
@route("POST", r"/api/repos/create")
def create_repo(hub: HubServer, req: _Request, params: dict) -> _Response:
    if req.user is None:
        raise HubError(401, "You must be authenticated to create a repo")
    payload = req.json()
    repo_type = payload.get("type") or "model"
    if repo_type not in ("model", "dataset"):
        raise HubError(400, f"hubserver supports models and datasets, not {repo_type}")
    name, namespace = payload.get("name"), payload.get("organization") or req.user
    if not isinstance(name, str) or not re.fullmatch(r"[\w.\-]{1,96}", name) or ".." in name:
        raise HubError(400, f"Invalid repo name: {name!r}")
    if not hub._user_can_write(namespace, req.user):
        raise HubError(403, f"You don't have the rights to create a {repo_type} under the namespace \"{namespace}\"")
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    repo_id = f"{namespace}/{name}"
    with hub._lock:
        existing = hub._repos.get((repo_type, repo_id))
        if existing is not None:
            # create_repo(exist_ok=True) reads "url" from this 409 body.
            return _json({"error": f"You already created this {repo_type} repo", "url": _repo_url(hub, existing)},
                         409, {"X-Error-Message": f"You already created this {repo_type} repo"})
        repo = hub._create_repo(repo_type, repo_id, private, req.user)
    return _json({"url": _repo_url(hub, repo), "name": repo_id, "id": repo.uid})


@route("DELETE", r"/api/repos/delete")
def delete_repo(hub: HubServer, req: _Request, params: dict) -> _Response:
    payload = req.json()
    namespace = payload.get("organization") or req.user or ""
    plural = {"model": "models", "dataset": "datasets"}.get(payload.get("type") or "model", "spaces")
    p = {"type": plural, "ns": namespace, "name": payload.get("name")}
    with hub._lock:
        repo = _write_repo(hub, req, p)
        del hub._repos[(repo.repo_type, repo.repo_id)]
    return _Response(200)


@route("PUT", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/settings")
def repo_settings(hub: HubServer, req: _Request, params: dict) -> _Response:
    payload = req.json()
    with hub._lock:
        repo = _write_repo(hub, req, params)
        if "private" in payload:
            repo.private = bool(payload["private"])
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
    return _json({"private": repo.private})


@route("GET", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}(?:/revision/(?P<rev>.+))?")
def repo_info(hub: HubServer, req: _Request, params: dict) -> _Response:
    with hub._lock:
        repo = _read_repo(hub, req, params)
        commit = hub._resolve(repo, params["rev"] or "main")
        readme = commit.tree.get("README.md")
        card = None
        if readme is not None:
            card = validate_card_metadata((hub._blobs / readme.sha256).read_text(errors="replace"), repo.repo_type)[2]
        blobs = req.flag("blobs")
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs:
                    sib["lfs"] = entry.to_api(path)["lfs"] | {"sha256": entry.sha256}
            siblings.append(sib)
        used = sum({e.sha256: e.size for c in repo.commits.values() for e in c.tree.values()}.values())
        tags = list(card.get("tags") or []) if card and isinstance(card.get("tags"), list) else []
        if card and isinstance(card.get("license"), str):
            tags.append(f"license:{card['license']}")
        info: dict[str, Any] = {
            "_id": repo.uid, "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.sha,
            "lastModified": commit.date, "createdAt": repo.created_at, "private": repo.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": tags,
            "siblings": siblings, "usedStorage": used,
        }
        if card is not None:
            info["cardData"] = card
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            if card:
                info.update({k: card[k] for k in ("library_name", "pipeline_tag") if k in card})
    expand = req.query.get("expand") or req.query.get("expand[]")
    if expand:
        info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
    return _json(info)


@route("GET", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/refs")
def list_refs(hub: HubServer, req: _Request, params: dict) -> _Response:
    with hub._lock:
        repo = _read_repo(hub, req, params)

        def refs(kind: str, items: dict[str, str]) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(items.items())]

        return _json({"branches": refs("heads", repo.branches), "converts": [], "tags": refs("tags", repo.tags),
                      "pullRequests": []})


@route("POST|DELETE", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/branch/(?P<ref>.+)")
def branch(hub: HubServer, req: _Request, params: dict) -> _Response:
    name = params["ref"]
    with hub._lock:
        repo = _write_repo(hub, req, params)
        if req.method == "DELETE":
            if name == "main":
                raise HubError(403, "Cannot delete the main branch")
            if repo.branches.pop(name, None) is None:
                raise HubError(404, f"Branch {name} not found", "RevisionNotFound")
            return _Response(200)
        if name in repo.branches or name in repo.tags:
            raise HubError(409, f"Reference already exists: {name}")
        payload = req.json()
        if payload.get("emptyBranch"):
            raise HubError(400, "hubserver does not support empty branches")
        repo.branches[name] = hub._resolve(repo, payload.get("startingPoint") or "main").sha
    return _Response(200)


@route("POST|DELETE", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/tag/(?P<ref>.+)")
def tag(hub: HubServer, req: _Request, params: dict) -> _Response:
    with hub._lock:
        repo = _write_repo(hub, req, params)
        if req.method == "DELETE":
            if repo.tags.pop(params["ref"], None) is None:
                raise HubError(404, f"Tag {params['ref']} not found", "RevisionNotFound")
            return _Response(200)
        name = req.json().get("tag")
        if not isinstance(name, str) or not re.fullmatch(r"[\w.\-][\w.\-/]*", name):
            raise HubError(400, f"Invalid tag name: {name!r}")
        target = hub._resolve(repo, params["ref"]).sha  # the URL segment is the revision to tag
        if name in repo.tags or name in repo.branches:
            raise HubError(409, f"Tag {name} already exists")
        repo.tags[name] = target
    return _Response(200)


@route("GET", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/commits/(?P<rev>.+)")
def list_commits(hub: HubServer, req: _Request, params: dict) -> _Response:
    with hub._lock:
        repo = _read_repo(hub, req, params)
        history = hub._history(repo, hub._resolve(repo, params["rev"]).sha)
    page, size = int(req.q("p") or 0), hub.commits_page_size
    items = [{"id": c.sha, "title": c.title, "message": c.message, "date": c.date,
              "authors": [{"user": c.author, "avatar": None}]} for c in history[page * size:(page + 1) * size]]
    headers = {}
    if (page + 1) * size < len(history):
        query = {k: v[0] for k, v in req.query.items()} | {"p": str(page + 1)}
        headers["Link"] = f'<{hub.url}{req.raw_path}?{urlencode(query)}>; rel="next"'
    return _json(items, headers=headers)


def _path_info(hub: HubServer, repo: Repo, commit: Commit, path: str, expand: bool) -> dict:
    if path in commit.tree:
        info = commit.tree[path].to_api(path)
        if expand:
            info["securityFileStatus"] = {"status": "unscanned", "avScan": {"virusFound": False, "virusNames": None},
                                          "pickleImportScan": None}
    else:
        info = {"type": "directory", "oid": commit.dir_oids()[path], "size": 0, "path": path}
    if expand:
        last = hub._last_commit(repo, commit, path)
        info["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
    return info


@route("GET", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/tree/(?P<rest>.+)")
def list_tree(hub: HubServer, req: _Request, params: dict) -> _Response:
    rev, base = _split_rev_path(params["raw"]["rest"])
    base = base.strip("/")
    recursive, expand = req.flag("recursive"), req.flag("expand")
    with hub._lock:
        repo = _read_repo(hub, req, params)
        commit = hub._resolve(repo, rev)
        dirs = commit.dir_oids()
        if base and base not in dirs:
            raise HubError(404, f"{base} does not exist or is not a directory", "EntryNotFound",
                           {"X-Repo-Commit": commit.sha})
        prefix = base + "/" if base else ""
        paths = [p for p in list(dirs) + list(commit.tree) if p and p.startswith(prefix)]
        if not recursive:
            paths = [p for p in paths if "/" not in p[len(prefix):]]
        paths.sort(key=lambda p: (p not in dirs, p))  # directories first, like the Hub
        start = int(req.q("cursor") or 0)
        size = hub.tree_page_size_expanded if expand else hub.tree_page_size
        entries = [_path_info(hub, repo, commit, p, expand) for p in paths[start:start + size]]
    headers = {}
    if start + size < len(paths):  # cursor pagination through the Link header, as on the Hub
        query = {k: v[0] for k, v in req.query.items()} | {"cursor": str(start + size)}
        headers["Link"] = f'<{hub.url}{req.raw_path}?{urlencode(query)}>; rel="next"'
    return _json(entries, headers=headers)


@route("POST", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/paths-info/(?P<rev>.+)")
def paths_info(hub: HubServer, req: _Request, params: dict) -> _Response:
    if (req.headers.get("Content-Type") or "").startswith("application/json"):
        payload = req.json()
        paths, expand = payload.get("paths") or [], bool(payload.get("expand"))
    else:  # the client sends a form: paths=a&paths=b&expand=false
        form = parse_qs(req.body.decode(), keep_blank_values=True)
        paths, expand = form.get("paths", []), (form.get("expand", ["false"])[0].lower() in ("1", "true"))
    with hub._lock:
        repo = _read_repo(hub, req, params)
        commit = hub._resolve(repo, params["rev"])
        dirs = commit.dir_oids()
        found = [p.strip("/") for p in paths if p.strip("/") in commit.tree or (p.strip("/") and p.strip("/") in dirs)]
        return _json([_path_info(hub, repo, commit, p, expand) for p in found])


# ----- uploads
def _branch_head(hub: HubServer, repo: Repo, revision: str) -> tuple[str, Commit]:
    """Commits only go to branches; anything else that resolves is a client mistake."""
    name = revision[len("refs/heads/"):] if revision.startswith("refs/heads/") else revision
    if name in repo.branches:
        return name, repo.commits[repo.branches[name]]
    hub._resolve(repo, revision)  # 404 RevisionNotFound when it does not exist at all
    raise HubError(400, f"Invalid rev id: {revision} is not a branch")


@route("POST", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/preupload/(?P<rev>.+)")
def preupload(hub: HubServer, req: _Request, params: dict) -> _Response:
    payload = req.json()
    if req.flag("create_pr"):
        raise HubError(400, "hubserver does not support pull requests")
    with hub._lock:
        repo = _write_repo(hub, req, params)
        _, head = _branch_head(hub, repo, params["rev"])
        attributes = head.tree.get(".gitattributes")
        patterns = _lfs_patterns((hub._blobs / attributes.sha256).read_bytes()) if attributes else []
        gitignore = payload.get("gitIgnore")
        if gitignore is None and ".gitignore" in head.tree:
            gitignore = (hub._blobs / head.tree[".gitignore"].sha256).read_text(errors="replace")
        files = []
        for f in payload.get("files") or []:
            path, size = f["path"], int(f.get("size") or 0)
            sample = base64.b64decode(f.get("sample") or "")
            # The Hub's rule: LFS when .gitattributes says so, when the file is big, or when it is binary.
            lfs = size > LFS_SIZE_THRESHOLD or any(_wildmatch(p, path) for p in patterns) or _looks_binary(sample)
            existing = head.tree.get(path)
            oid = None
            if existing is not None:  # lets the client skip unchanged files (no-op commits)
                oid = existing.sha256 if existing.lfs else existing.git_oid
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular",
                          "shouldIgnore": _is_ignored(gitignore, path), "oid": oid})
    return _json({"files": files, "commitOid": head.sha})


def _lfs_sig(hub: HubServer, repo: Repo, oid: str, size: int) -> str:
    message = f"{repo.repo_type}:{repo.repo_id}:{oid}:{size}".encode()
    return hmac.new(hub._secret, message, hashlib.sha256).hexdigest()


@route("POST", rf"/(?:(?P<type>datasets|spaces)/)?{_REPO_SEG}\.git/info/lfs/objects/batch")
def lfs_batch(hub: HubServer, req: _Request, params: dict) -> _Response:
    params = dict(params, type=params.get("type") or "models")
    payload = req.json()
    if payload.get("operation") != "upload":  # huggingface_hub downloads through /resolve, not the batch API
        raise HubError(400, "hubserver only implements the LFS upload operation")
    with hub._lock:
        repo = _write_repo(hub, req, params)
        plural = f"{repo.repo_type}s"
        objects = []
        for obj in payload.get("objects") or []:
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                objects.append({"oid": str(oid), "size": int(size or 0),
                                "error": {"code": 422, "message": "Invalid oid or size"}})
                continue
            out: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if repo.lfs_oids.get(oid) != size:  # no "actions" = already stored, nothing to upload
                sig = _lfs_sig(hub, repo, oid, size)
                href = f"{hub.url}/__lfs__/{plural}/{repo.repo_id}/{oid}?size={size}&sig={sig}"
                out["actions"] = {"upload": {"href": href},
                                  "verify": {"href": f"{hub.url}/__lfs__/verify/{plural}/{repo.repo_id}"}}
            objects.append(out)
    return _Response(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                     {"Content-Type": "application/vnd.git-lfs+json"})


@route("PUT", rf"/__lfs__/(?P<type>models|datasets)/{_REPO_SEG}/(?P<oid>[0-9a-f]{{64}})")
def lfs_upload(hub: HubServer, req: _Request, params: dict) -> _Response:
    # Like a presigned S3 URL: no Authorization header, the signature from the batch answer is the credential.
    oid, size = params["oid"], int(req.q("size") or -1)
    with hub._lock:
        repo = hub._repos.get((_repo_type(params), f"{params['ns']}/{params['name']}"))
    if repo is None or not hmac.compare_digest(req.q("sig") or "", _lfs_sig(hub, repo, oid, size)):
        raise HubError(403, "Invalid or expired signature")
    if len(req.body) != size or hashlib.sha256(req.body).hexdigest() != oid:
        raise HubError(400, f"Uploaded content does not match oid {oid} / size {size}")
    hub._put_blob(req.body)
    with hub._lock:
        repo.lfs_oids[oid] = size
    return _Response(200, headers={"ETag": f'"{oid}"'})


@route("POST", rf"/__lfs__/verify/(?P<type>models|datasets)/{_REPO_SEG}")
def lfs_verify(hub: HubServer, req: _Request, params: dict) -> _Response:
    payload = req.json()
    with hub._lock:
        repo = _write_repo(hub, req, params)
        if repo.lfs_oids.get(payload.get("oid")) != payload.get("size"):
            raise HubError(404, "Object not found or size mismatch")
    return _json({"success": True})


def _valid_path(path: Any) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        raise HubError(400, f"Invalid path: {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path: {path!r}")
    return path


@route("POST", rf"/api/(?P<type>models|datasets|spaces)/{_REPO_SEG}/commit/(?P<rev>.+)")
def commit(hub: HubServer, req: _Request, params: dict) -> _Response:
    if req.flag("create_pr"):
        raise HubError(400, "hubserver does not support pull requests")
    with hub._lock:
        _write_repo(hub, req, params)  # auth errors first, as on the Hub; checked again below under the lock
    try:
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
    except ValueError:
        raise HubError(400, "Invalid ndjson payload") from None
    if not lines or lines[0].get("key") != "header":
        raise HubError(400, "The first line of a commit payload must be the header")
    header = lines[0]["value"]
    title = header.get("summary")
    if not isinstance(title, str) or not title.strip():
        raise HubError(400, "Commit summary is required")
    # Decode regular files before taking the lock; content-addressed blobs are harmless if the commit fails.
    staged: list[tuple[str, str, Any]] = []
    for line in lines[1:]:
        key, value = line.get("key"), line.get("value") or {}
        path = _valid_path(value.get("path", "").rstrip("/") if key == "deletedFolder" else value.get("path"))
        if key == "file":
            raw = value.get("content", "")
            data = base64.b64decode(raw) if value.get("encoding") == "base64" else raw.encode()
            staged.append((key, path, hub._regular_entry(data)))
        elif key in ("lfsFile", "deletedFile", "deletedFolder"):
            staged.append((key, path, value))
        else:
            raise HubError(400, f"Unknown commit operation: {key!r}")

    with hub._lock:  # from here to the branch update nothing else touches the repo: all or nothing
        repo = _write_repo(hub, req, params)
        branch_name, head = _branch_head(hub, repo, params["rev"])
        parent = header.get("parentCommit")
        if parent and not head.sha.startswith(parent.lower()):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(head.tree)
        for key, path, value in staged:
            if key == "file":
                tree[path] = value
            elif key == "lfsFile":
                oid, size = value.get("oid"), repo.lfs_oids.get(value.get("oid"))
                if size is None or (value.get("size") is not None and value["size"] != size):
                    raise HubError(422, f"Your push was rejected because an LFS pointer pointed to a file that "
                                        f"does not exist ({path}: {oid})")
                tree[path] = Entry(oid, size, True, _git_hash("blob", _lfs_pointer(oid, size)))
            elif key == "deletedFile":
                if tree.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            else:
                doomed = [p for p in tree if p.startswith(path + "/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del tree[p]
        for path in tree:  # a path cannot be both a file and a folder
            parts = path.split("/")
            clash = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in tree), None)
            if clash:
                raise HubError(400, f"Path conflict: {clash} is a file, cannot add {path}")
        if "README.md" in tree and tree["README.md"] is not head.tree.get("README.md"):
            errors = validate_card_metadata((hub._blobs / tree["README.md"].sha256).read_text(errors="replace"),
                                            repo.repo_type)[0]
            if errors:
                raise HubError(400, "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))
        new = hub._make_commit([head.sha], title.strip(), header.get("description") or "", req.user or "", tree)
        repo.commits[new.sha] = new
        repo.branches[branch_name] = new.sha
    url = f"{_repo_url(hub, repo)}/commit/{new.sha}"
    return _json({"success": True, "commitOid": new.sha, "commitUrl": url, "commitMessage": title, "hookOutput": ""})


# ----- downloads
@route("GET|HEAD", rf"/(?:(?P<type>datasets|spaces)/)?{_REPO_SEG}/resolve/(?P<rest>.+)")
def resolve(hub: HubServer, req: _Request, params: dict) -> _Response:
    params = dict(params, type=params.get("type") or "models")
    rev, path = _split_rev_path(params["raw"]["rest"])
    with hub._lock:
        repo = _read_repo(hub, req, params)
        commit = hub._resolve(repo, rev)
        entry = commit.tree.get(path)
    headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
    if entry is None:
        raise HubError(404, "Entry not found", "EntryNotFound", headers)
    headers.update({"ETag": f'"{entry.etag}"', "Content-Type": "application/octet-stream"})
    if entry.lfs:  # the Hub sends these on its redirect to the CDN; we serve the bytes directly
        headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
    blob = hub._blobs / entry.sha256
    rng = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", req.headers.get("Range") or "")
    if rng and (rng.group(1) or rng.group(2)):
        first, last = rng.groups()
        if first:
            start, end = int(first), min(int(last) if last else entry.size - 1, entry.size - 1)
        else:  # suffix range: the last N bytes
            start, end = max(entry.size - int(last), 0), entry.size - 1
        if start >= entry.size or start > end:
            raise HubError(416, "Range Not Satisfiable", headers={**headers, "Content-Range": f"bytes */{entry.size}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        return _Response(206, headers=headers, file=(blob, start, end - start + 1))
    return _Response(200, headers=headers, file=(blob, 0, entry.size))
