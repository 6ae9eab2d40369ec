"""The caption stage's content-keyed caches: one SQLite file per model step.

    $SYNTHVLM_CACHE/curation/<step>.sqlite      (default ~/.cache/synthvlm/curation/)

A key is the sha256 of everything the value depends on: the step's model identity (the model
files' digests, the open_clip or BLIP model, or the endpoint's model name), the prompt, the
caption text and, for image steps, the sha256 of the source image's bytes. The value is the raw
score (or the LLM's raw answer); thresholds are applied after the lookup, so changing a threshold,
the order of sources or the output dir reuses every value, and a rerun or resumed build computes
and asks nothing twice. Deleting the folder only costs recomputation.

WAL mode lets several processes (two builds sharing a cache) read and write safely.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Iterable

from ..settings import cache_dir

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def cache_key(*parts: str) -> str:
    """sha256 over the parts, each length-prefixed so that no two different tuples collide."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(f"{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


class StepCache:
    """Values of one step, by key; JSON-encoded (floats round-trip exactly)."""

    def __init__(self, step: str, folder: Path | None = None):
        folder = Path(folder) if folder is not None else cache_dir() / "curation"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{step}.sqlite"
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, object]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, object] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound on host parameters
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(f"SELECT key, value FROM entries WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def put_many(self, items: dict[str, object]) -> None:
        if items:
            with self._db:  # one transaction per batch
                self._db.executemany("INSERT OR REPLACE INTO entries (key, value) VALUES (?, ?)",
                                     [(k, json.dumps(v)) for k, v in items.items()])

    def close(self) -> None:
        self._db.close()
