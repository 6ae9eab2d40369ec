"""Model references: the one parser for what a recipe's model fields may say.

    builtin:NAME             a model this package builds and ships (builtin.py)
    local-dir:PATH           a local folder (explicit; the only way to name an open_clip folder)
    hf-hub:ORG/NAME          a Hub repository (explicit)
    ORG/NAME                 a Hub repository (pipelines), pinned with a separate `revision`
    ./dir, /abs/dir, ~/dir   a local folder (pipelines; also any text that is not an ORG/NAME id,
                             or that exists relative to the recipe file)
    ViT-B-32                 an open_clip architecture name (CLIP models; needs `pretrained`)

Every module that needs to know what a model string means (checks, preflight, loading, plan,
lock) asks `ModelRef.parse`, so they cannot disagree; what names a model's content is digests.py's.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SCHEMES = ("builtin:", "local-dir:", "hf-hub:")
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz")

BUILTIN, LOCAL, HUB, OPEN_CLIP = "builtin", "local", "hub", "open_clip"


@dataclass(frozen=True)
class ModelRef:
    kind: str     # builtin | local | hub | open_clip
    name: str     # the builtin name, the folder, the Hub repo id, or the open_clip architecture
    scheme: str   # the prefix it was written with ("" when none), so str(ref) gives the text back

    @classmethod
    def parse(cls, text: str, *, clip: bool = False, base: Path | None = None) -> "ModelRef":
        """`clip=True` reads a bare name as an open_clip architecture; otherwise a bare name is a
        Hub id when it looks like ORG/NAME and does not exist as a folder under `base`."""
        for scheme, kind in zip(SCHEMES, (BUILTIN, LOCAL, HUB)):
            if text.startswith(scheme):
                return cls(kind, text[len(scheme):], scheme)
        if clip:
            return cls(OPEN_CLIP, text, "")
        here = Path(base) if base is not None else Path.cwd()
        local = (text.startswith((".", "/", "~")) or not HUB_ID.match(text)
                 or (here / os.path.expanduser(text)).exists())
        return cls(LOCAL if local else HUB, text, "")

    def __str__(self) -> str:
        return self.scheme + self.name

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL

    def path(self, base: Path | None = None) -> Path:
        """A local reference's folder, relative paths taken against `base` (default: the cwd)."""
        p = Path(os.path.expanduser(self.name))
        return p if p.is_absolute() or base is None else Path(base) / p

    def with_name(self, name: str) -> "ModelRef":
        return ModelRef(self.kind, name, self.scheme)


def pretrained_is_file(value: str) -> bool:
    """Whether an open_clip `pretrained` value names a checkpoint file rather than a tag like openai."""
    return "/" in value or os.sep in value or value.startswith(("~", ".")) or value.endswith(CHECKPOINT_SUFFIXES)
