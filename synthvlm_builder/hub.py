"""Names on the Hugging Face Hub, each parsed in one place: an `hf://` URL naming a file in a Hub
repository (a recipe's caption file or model file: validate checks it, the reader and the model loader
fetch it), and the commit a file of the local Hub cache belongs to (its snapshot folder).

    hf://datasets/ORG/NAME[@REVISION]/FILE      a file in a dataset repository (a caption file)
    hf://ORG/NAME[@REVISION]/FILE               a file in a model repository (a KenLM model, ...)
    ~/.cache/huggingface/hub/models--ORG--NAME/snapshots/COMMIT/FILE   a file fetched at COMMIT
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Optional

PREFIX = "hf://"


@dataclass(frozen=True)
class HubFile:
    url: str
    repo_type: str           # "model", "dataset", ...
    repo_id: str             # ORG/NAME
    revision: Optional[str]  # as written after @, else None (the default branch)
    path: str                # the file in the repository; "" when the URL names a whole repository


def is_hf_url(text: str) -> bool:
    return text.startswith(PREFIX)


def parse_hf_url(url: str) -> HubFile:
    """`url` read by huggingface_hub's grammar (hf://[TYPE/]ID[@REVISION][/PATH], revisions such as
    refs/pr/3 included); ValueError saying what is wrong when it does not follow it."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError
    try:
        uri = parse_hf_uri(url)
    except HfUriError as e:
        raise ValueError(str(e)) from None
    return HubFile(url, uri.type, uri.id, uri.revision, uri.path_in_repo)


def snapshot_commit(path: str | PurePath) -> Optional[str]:
    """The commit a file of the local Hub cache was fetched at (.../snapshots/COMMIT/...); None for a
    path outside the cache."""
    text = PurePath(path).as_posix()
    if "/snapshots/" not in text:
        return None
    return text.split("/snapshots/")[1].split("/")[0]
