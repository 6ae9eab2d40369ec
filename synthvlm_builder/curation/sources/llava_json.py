"""llava_json: LLaVA-Pretrain's JSON list of {id, image, conversations}; the caption is the first gpt
turn, the row id the record's id, and with `images` each caption's original image is the record's
`image` under that folder. Streamed with yajl (curation/jsonlist.py): one record in memory at a time."""
from __future__ import annotations

import os
from typing import Iterator

from ...errors import InputError
from ...recipe.config import MISSING_IMAGE, SourceConfig
from ...text import printable
from ..jsonlist import iter_json_list
from ..reading import CaptionSource, Row
from ..sourcefile import SourceFile


def _llava_image(rec: dict, folder: str | None):
    if folder is None:
        return None
    name = rec.get("image")
    return os.path.join(folder, name) if isinstance(name, str) and name else MISSING_IMAGE



class LlavaJsonSource(CaptionSource):
    name = "llava_json"
    summary = "LLaVA-Pretrain list of {id, image, conversations}; caption = first gpt turn"
    order = 10
    unit = "record"
    options = ("images",)
    images = "images"

    @classmethod
    def rows(cls, src: SourceConfig, index: int, f: SourceFile) -> Iterator[Row]:
        id_key = src.id_column or "id"
        for n, rec in enumerate(iter_json_list(f)):
            if not isinstance(rec, dict) or id_key not in rec:
                raise InputError(f.field, f"the record has no {id_key!r}", location=f"{f.path}: record {n}")
            turns = rec.get("conversations") or []
            text = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None) \
                if isinstance(turns, list) else None
            if not isinstance(text, str):
                raise InputError(f.field, f"the record (id {printable(rec[id_key])[:80]}) has no 'gpt' turn with text",
                                 location=f"{f.path}: record {n}")
            yield rec[id_key], text, n, _llava_image(rec, src.images)
