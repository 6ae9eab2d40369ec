"""Single model files (a KenLM model, a SentencePiece model): a local path or a Hub file.

    /abs/path/en.arpa.bin                         a local file (recipe paths are resolved on load)
    hf://edugp/kenlm/wikipedia/en.arpa.bin        a file in a Hub model repository
    hf://edugp/kenlm@<revision>/wikipedia/en.sp.model

Hub files are fetched with `hf_hub_download` into the Hugging Face cache, like every other model,
and checked beforehand by the same preflight (`preflight.check_hub_file`): cached, or served.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..hub import is_hf_url, parse_hf_url, snapshot_commit
from .preflight import ModelUnavailable, check_hub_file


@dataclass(frozen=True)
class ModelFile:
    text: str                   # as written in the recipe (resolved)
    repo_id: str | None = None  # a Hub file's repository, else None (a local file)
    filename: str = ""          # a Hub file's path in its repository
    revision: str | None = None
    repo_type: str = "model"

    @classmethod
    def parse(cls, text: str) -> "ModelFile":
        if not is_hf_url(text):
            return cls(text)
        try:
            url = parse_hf_url(text)
        except ValueError as e:
            raise ModelUnavailable(f"{text}: {e}") from None
        if not url.path:
            raise ModelUnavailable(f"{text} names a repository, not a file (expected hf://<org>/<name>/<file>)")
        return cls(text, url.repo_id, url.path, url.revision, url.repo_type)

    @property
    def is_local(self) -> bool:
        return self.repo_id is None

    def check(self) -> None:
        """Preflight: raise ModelUnavailable unless the file is here, cached, or served by the Hub."""
        if self.is_local:
            if not Path(self.text).is_file():
                raise ModelUnavailable(f"model file not found: {self.text}")
            return
        check_hub_file(self.repo_id, [self.filename], self.revision,
                        "or point the recipe at a local copy of the file", label=self.text)

    def path(self) -> Path:
        """The file on this machine: downloaded into the Hugging Face cache the first time."""
        if self.is_local:
            self.check()
            return Path(self.text)
        from huggingface_hub import hf_hub_download
        try:
            return Path(hf_hub_download(self.repo_id, self.filename, revision=self.revision, repo_type=self.repo_type))
        except Exception as e:  # offline and not cached, unknown repo or file, transport errors
            raise ModelUnavailable(f"cannot download {self.text}: {type(e).__name__}: {e}") from None

    def digest(self) -> str:
        """What names this file's content: the sha256 of a local file; for a Hub file the commit it
        resolved to and its path there (the cache's snapshot folder names the commit)."""
        path = self.path()
        commit = None if self.is_local else snapshot_commit(path)
        if commit:
            return f"commit:{self.repo_id}@{commit}/{self.filename}"
        from ..atomic import sha256_file
        return "sha256:" + sha256_file(path)
