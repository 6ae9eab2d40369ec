"""`compare`: what a change does to the data, from two sides (sides.py) to one `Comparison`.

- rows: added and removed (by id), changed (the same id with other image bytes, or another caption);
- scores: for each score column either side's data has, the mean shift with its bootstrap confidence
  interval and the two-sample KS statistic (stats.py);
- funnel: the caption funnel and the selection steps side by side, matched by step (a threshold's value
  is not part of the match: `min_clip_score >= 0.2` and `>= 0.25` are one step), with drop rates;
- captions: length, vocabulary, distinct-2 and concept coverage;
- the most changed rows: pairs of rows of the same caption (the same id where both sides have it), ranked
  by how much the image changed (mean absolute pixel difference), then by how much the scores moved.

The verdict is `diff`'s: same data when the content identities (the fingerprint and the inputs' digests)
are equal; otherwise exit 3 when the version was bumped, 4 when it was not.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..execution.report import VERDICTS, diff_exit_code, semver_key
from . import stats
from .sides import Row, Side

GRID = 8      # pairs shown by default
POOL = 2000   # changed pairs whose images are decoded to rank them


@dataclass(frozen=True)
class Step:
    section: str         # captions | selection
    key: str
    label_old: str | None
    label_new: str | None
    old: tuple | None    # (dropped or None, remaining)
    new: tuple | None

    @staticmethod
    def rate(counts: tuple | None) -> float | None:
        if counts is None or counts[0] is None or counts[0] + counts[1] == 0:
            return None
        return counts[0] / (counts[0] + counts[1])


@dataclass(frozen=True)
class Pair:
    caption_id: str
    old: Row
    new: Row
    pixels: float        # mean |difference| in levels over every pixel and channel (inf: other sizes)
    deltas: dict         # score -> new - old

    @property
    def image_changed(self) -> bool:
        return self.old.digest != self.new.digest


@dataclass
class Comparison:
    old: Side
    new: Side
    added: list
    removed: list
    changed: list         # ids in both sides whose image differs
    recaptioned: list     # ids in both sides whose caption differs
    unchanged: int
    scores: list          # (name, stats.Shift or None when a side lacks the column)
    funnel: list          # Step
    captions: tuple       # (old CaptionStats, new CaptionStats)
    concepts_note: str
    grid: list            # Pair, most changed first
    notes: list = field(default_factory=list)
    page: Path | None = None  # the HTML page, once written (report.write)

    @property
    def data_changed(self) -> bool:
        return self.old.identity != self.new.identity

    @property
    def bumped(self) -> bool:
        try:
            return semver_key(self.new.version) > semver_key(self.old.version)
        except AttributeError:  # not semver (a lock edited by hand): never counts as bumped
            return False

    @property
    def exit_code(self) -> int:
        return diff_exit_code(self.data_changed, self.bumped)

    @property
    def verdict(self) -> str:
        return VERDICTS[self.exit_code]

    def markdown(self) -> str:
        """Byte-stable Markdown for a pull-request comment (report.py)."""
        from .report import to_markdown
        return to_markdown(self)

    def to_json(self) -> dict:
        from .report import to_json
        return to_json(self)

    summary = markdown  # what the CLI prints


def compare(old: Side, new: Side, grid: int = GRID) -> Comparison:
    a, b = {r.id: r for r in old.rows}, {r.id: r for r in new.rows}
    common = [i for i in a if i in b]
    changed = [i for i in common if a[i].digest != b[i].digest]
    recaptioned = [i for i in common if a[i].caption != b[i].caption]
    different = set(changed) | set(recaptioned)
    old_caps, new_caps = _captions(old.rows), _captions(new.rows)
    chosen, note = stats.concepts(old_caps, new_caps, old.shapes_world and new.shapes_world)
    cmp = Comparison(
        old, new, added=sorted(i for i in b if i not in a), removed=sorted(i for i in a if i not in b),
        changed=sorted(changed), recaptioned=sorted(recaptioned), unchanged=len(common) - len(different),
        scores=_scores(old, new), funnel=funnel_steps(old, new),
        captions=(stats.caption_stats(old_caps, chosen), stats.caption_stats(new_caps, chosen)),
        concepts_note=note, grid=most_changed(old, new, grid), notes=old.notes + new.notes)
    if "recipe" in (old.kind, new.kind):
        cmp.notes.append("a previewed recipe's rows are the candidates that pass its thresholds and per-caption rule;"
                         " a build then keeps the top select.size of all its candidates")
    if not cmp.data_changed and (cmp.added or cmp.removed or different):
        cmp.notes.append("the content identities are equal but rows differ: the sides were made on other hardware,"
                         " thread counts or library versions, or are previews of different sizes")
    return cmp


def _captions(rows: list[Row]) -> list[str]:
    """One caption per caption id (several candidates of a caption share it)."""
    return list({r.caption_id: r.caption for r in rows}.values())


def _scores(old: Side, new: Side) -> list:
    """(name, Shift) for each score column both sides have, (name, None) for one only a side has."""
    out = []
    for name in dict.fromkeys(old.scores + new.scores):  # both sides' columns, in their schema order
        both = name in old.scores and name in new.scores
        out.append((name, stats.mean_shift([r.scores[name] for r in old.rows], [r.scores[name] for r in new.rows])
                    if both else None))
    return out


# --- funnel -------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def _caption_rows(funnel: dict) -> list[tuple[str, str, tuple]]:
    read = sum(int(s.get("read", 0)) for s in funnel.get("sources", []))
    out = [("read", "captions read", (None, read))]
    left = read
    for f in funnel.get("filters", []):
        left -= int(f.get("dropped", 0))
        out.append((f"filter {f.get('name')}", f"filter {f.get('name')}", (int(f.get("dropped", 0)), left)))
    return out


def _selection_rows(funnel: dict) -> list[tuple[str, str, tuple]]:
    out = []
    for s in funnel.get("steps", []):
        label = str(s.get("step"))
        dropped = s.get("dropped")
        out.append((_NUMBER.sub("N", label), label, (None if dropped is None else int(dropped), int(s["kept"]))))
    return out


def _merge(a: list[str], b: list[str]) -> list[str]:
    """Keys of both lists, in a's order, b's own keys placed after the key they follow in b."""
    out, at = list(a), 0
    for key in b:
        if key in out:
            at = out.index(key) + 1
        else:
            out.insert(at, key)
            at += 1
    return out


def funnel_steps(old: Side, new: Side) -> list[Step]:
    steps = []
    for section, rows, funnel in (("captions", _caption_rows, "caption_funnel"),
                                  ("selection", _selection_rows, "selection_funnel")):
        a = {k: (label, c) for k, label, c in rows(getattr(old, funnel))}
        b = {k: (label, c) for k, label, c in rows(getattr(new, funnel))}
        for key in _merge(list(a), list(b)):
            steps.append(Step(section, key, a[key][0] if key in a else None, b[key][0] if key in b else None,
                              a[key][1] if key in a else None, b[key][1] if key in b else None))
    return steps


# --- the most changed rows ------------------------------------------------------------------------------

def _pixels(old: bytes, new: bytes) -> float:
    from PIL import Image
    a = Image.open(io.BytesIO(old)).convert("RGB")
    b = Image.open(io.BytesIO(new)).convert("RGB")
    if a.size != b.size:
        return math.inf
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


def most_changed(old: Side, new: Side, n: int) -> list[Pair]:
    """Up to `n` pairs of rows of one caption that differ, the most changed image first."""
    a, b = {r.id: r for r in old.rows}, {r.id: r for r in new.rows}
    pairs = [(a[i], b[i]) for i in a if i in b]
    first_old: dict = {}
    for r in old.rows:
        if r.id not in b:
            first_old.setdefault(r.caption_id, r)
    first_new: dict = {}
    for r in new.rows:
        if r.id not in a:
            first_new.setdefault(r.caption_id, r)
    pairs += [(first_old[c], first_new[c]) for c in first_old if c in first_new]
    names = [s for s in old.scores if s in new.scores]
    out = [Pair(x.caption_id, x, y, 0.0, {s: y.scores[s] - x.scores[s] for s in names}) for x, y in pairs
           if x.digest != y.digest or x.caption != y.caption or any(x.scores[s] != y.scores[s] for s in names)]

    def moved(p: Pair) -> float:
        return sum(abs(d) for d in p.deltas.values() if math.isfinite(d))

    # Decoding is the cost: with more changed pairs than POOL, only the POOL whose scores moved most are
    # decoded and ranked by their pixels.
    out.sort(key=lambda p: (not p.image_changed, -moved(p), p.caption_id, p.old.id))
    out = [replace(p, pixels=_pixels(p.old.image, p.new.image)) if p.image_changed else p for p in out[:POOL]]
    out.sort(key=lambda p: (-p.pixels, -moved(p), p.caption_id, p.old.id))
    return out[:n]
