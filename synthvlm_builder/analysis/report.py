"""A `Comparison` as Markdown (the pull-request comment, the card's "Changes since" section), as JSON,
and as a self-contained HTML page with the score plots and the most changed rows side by side.

The same data give the same bytes: nothing here reads a clock or a path that was not given, numbers
have fixed formats, and the bootstrap is seeded (stats.py). Every string that came from a recipe or from
data goes through text.py (`md_code`, `md_text`) in Markdown and through Jinja's autoescape in HTML.
"""
from __future__ import annotations

import base64
import math
from pathlib import Path

from ..atomic import atomic_write
from ..errors import InputError
from ..text import md_code, md_text
from . import plots, stats
from .compare import Comparison, Step

TEMPLATE = Path(__file__).with_name("compare.html.j2")
PAGE, MARKDOWN, JSON_FILE = "index.html", "compare.md", "compare.json"
GENERATOR = "synthvlm-build compare"  # in the page's <meta name="generator">: marks a page this verb wrote
ICON = {0: "✅", 3: "✅", 4: "❌"}
LISTED = 10  # ids listed per kind of change


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, fmt)


def _count(x: int | None) -> str:
    return "" if x is None else f"{x:,}"


def _ids(label: str, ids: list) -> list[str]:
    if not ids:
        return []
    shown = ", ".join(md_code(i, table=False) for i in ids[:LISTED])
    more = f" and {len(ids) - LISTED:,} more" if len(ids) > LISTED else ""
    return [f"- {label}: {shown}{more}"]


def to_markdown(cmp: Comparison, level: int = 3, title: str | None = None, card: bool = False) -> str:
    """The comparison; `card`: as a release card's section (no exit code, no rows grid: its images are
    not in the card)."""
    h, old, new = "#" * level, cmp.old, cmp.new

    def code(value) -> str:  # outside tables
        return md_code(value, table=False)
    lines = [f"{h} {title or 'Data comparison: ' + code(old.spec) + ' → ' + code(new.spec)}", ""]
    fp = (f"fingerprint {code(old.fingerprint[:12])} → {code(new.fingerprint[:12])}"
          if old.fingerprint != new.fingerprint else f"fingerprint {code(new.fingerprint[:12])}")
    exit_code = "" if card else f" (exit {cmp.exit_code})"
    lines += [f"**{ICON[cmp.exit_code]} {cmp.verdict}**{exit_code}: {code(old.name)} {code(old.version)} →"
              f" {code(new.name)} {code(new.version)}, {fp}.", ""]
    lines += [f"{h}# Rows", "", "| rows | count |", "|---|---:|",
              f"| old | {len(old.rows):,} |", f"| new | {len(new.rows):,} |",
              f"| added (ids only in new) | {len(cmp.added):,} |",
              f"| removed (ids only in old) | {len(cmp.removed):,} |",
              f"| changed image (same id) | {len(cmp.changed):,} |",
              f"| changed caption (same id) | {len(cmp.recaptioned):,} |", f"| unchanged | {cmp.unchanged:,} |", ""]
    listed = _ids("added", cmp.added) + _ids("removed", cmp.removed) + _ids("changed image", cmp.changed) \
        + _ids("changed caption", cmp.recaptioned)
    lines += listed + ([""] if listed else [])
    lines += _scores(cmp, h) + _funnel(cmp, h, changed_only=card) + _captions(cmp, h)
    if not card:
        lines += _grid(cmp, h)
    if cmp.notes:
        lines += [f"{h}# Notes", ""] + [f"- {md_text(n)}" for n in cmp.notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _scores(cmp: Comparison, h: str) -> list[str]:
    lines = [f"{h}# Scores", "",
             "| score | old mean | new mean | shift | 95% CI of the shift | KS | rows old → new |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in cmp.scores:
        if s is None:
            side = "new" if name in cmp.new.scores else "old"
            lines.append(f"| {md_code(name)} | | | | only in {side} | | |")
            continue
        lines.append(f"| {md_code(name)} | {_num(s.old_mean)} | {_num(s.new_mean)} | {_num(s.delta, '+.4f')} |"
                     f" [{_num(s.low, '+.4f')}, {_num(s.high, '+.4f')}] | {_num(s.ks, '.3f')} |"
                     f" {s.n_old:,} → {s.n_new:,} |")
    return lines + ["", f"Shift: new mean − old mean; its interval from {stats.BOOTSTRAP:,} bootstrap resamples of"
                        f" each side (seed {stats.SEED}). KS: the largest gap between the two empirical"
                        " distributions (0 same, 1 disjoint).", ""]


def _rate(step: Step) -> str:
    a, b = Step.rate(step.old), Step.rate(step.new)
    if a is None and b is None:
        return ""
    return f"{_num(a, '.1%') if a is not None else '–'} → {_num(b, '.1%') if b is not None else '–'}"


def _funnel(cmp: Comparison, h: str, changed_only: bool = False) -> list[str]:
    """The funnels side by side; `changed_only`: just the steps whose counts or names differ (the card's)."""
    steps = [s for s in cmp.funnel if not changed_only or s.old != s.new or s.label_old != s.label_new]
    lines = [f"{h}# Funnel", ""]
    if not steps:
        return lines + ["Every step of the funnel kept and dropped as many as before.", ""]
    lines += ["| step | dropped old | dropped new | Δ dropped | left old | left new | drop rate old → new |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for s in steps:
        label = s.label_new if s.label_new == s.label_old or s.label_old is None else (
            s.label_old if s.label_new is None else f"{s.label_old} → {s.label_new}")
        da, db = (s.old or (None, None))[0], (s.new or (None, None))[0]
        delta = "" if da is None and db is None else f"{(db or 0) - (da or 0):+,}"
        lines.append(f"| {md_code(label)} | {_count(da)} | {_count(db)} | {delta} |"
                     f" {_count((s.old or (None, None))[1])} | {_count((s.new or (None, None))[1])} | {_rate(s)} |")
    same = len(cmp.funnel) - len(steps)
    return lines + ["", f"The steps that changed; the other {same} kept and dropped as many as before." if same else
                    "Caption steps first (each filter in order), then selection (thresholds, screens, near duplicates,"
                    " best per caption, the top-N cut).", ""]


def _captions(cmp: Comparison, h: str) -> list[str]:
    a, b = cmp.captions
    rows = (("captions", a.captions, b.captions, ","), ("mean length (words)", a.mean_words, b.mean_words, ".2f"),
            ("vocabulary (distinct words)", a.vocabulary, b.vocabulary, ","),
            ("distinct-2 (distinct bigrams / bigrams)", a.distinct_2, b.distinct_2, ".3f"),
            (f"concepts covered (of {a.concepts})", a.covered, b.covered, ","))
    lines = [f"{h}# Captions", "", "| | old | new | Δ |", "|---|---:|---:|---:|"]
    for label, x, y, fmt in rows:
        lines.append(f"| {label} | {format(x, fmt)} | {format(y, fmt)} | {format(y - x, '+' + fmt)} |")
    lines += ["", f"Concepts: {cmp.concepts_note}.", ""]  # the module's own words (stats.concepts)
    for side, s in (("old", a), ("new", b)):
        if s.missing:
            lines += [f"- not mentioned by {side}: {', '.join(md_code(c, table=False) for c in s.missing[:LISTED])}"
                      + (f" and {len(s.missing) - LISTED} more" if len(s.missing) > LISTED else "")]
    return lines + ([""] if a.missing or b.missing else [])


def _grid(cmp: Comparison, h: str) -> list[str]:
    lines = [f"{h}# Most changed rows", ""]
    if not cmp.grid:
        return lines + ["No row of a caption both sides have differs.", ""]
    names = list(cmp.grid[0].deltas)
    lines += ["| caption | old row | new row | image Δ (levels) | " + " | ".join(md_code(n) + " old → new"
                                                                       for n in names) + " |",
              "|---|---|---|---:|" + "---|" * len(names)]
    for p in cmp.grid:
        caption = md_text(p.new.caption) if p.old.caption == p.new.caption else \
            f"{md_text(p.old.caption)} → {md_text(p.new.caption)}"
        cells = " | ".join(f"{_num(p.old.scores[n])} → {_num(p.new.scores[n])}" for n in names)
        lines.append(f"| {md_code(p.caption_id)} {caption} | {md_code(p.old.id)} | {md_code(p.new.id)} |"
                     f" {_num(p.pixels, '.1f')} | {cells} |")
    return lines + ["", "Mean absolute pixel difference per channel, 0-255; the images are side by side in the"
                        " HTML page `compare` writes (`--output`).", ""]


# --- JSON --------------------------------------------------------------------------------------------

def _clean(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def to_json(cmp: Comparison) -> dict:
    def side(s):
        return {"spec": s.spec, "kind": s.kind, "name": s.name, "version": s.version, "fingerprint": s.fingerprint,
                "identity": s.identity, "rows": len(s.rows), "scores": list(s.scores)}
    a, b = cmp.captions
    return {
        "old": side(cmp.old), "new": side(cmp.new), "exit_code": cmp.exit_code, "verdict": cmp.verdict,
        "rows": {"added": cmp.added, "removed": cmp.removed, "changed": cmp.changed,
                 "recaptioned": cmp.recaptioned, "unchanged": cmp.unchanged},
        "scores": {name: None if s is None else {k: _clean(v) for k, v in vars(s).items()} for name, s in cmp.scores},
        "bootstrap": {"resamples": stats.BOOTSTRAP, "confidence": stats.CONFIDENCE, "seed": stats.SEED},
        "funnel": [{"section": s.section, "step": s.key, "old": s.label_old, "new": s.label_new,
                    "old_counts": None if s.old is None else {"dropped": s.old[0], "left": s.old[1]},
                    "new_counts": None if s.new is None else {"dropped": s.new[0], "left": s.new[1]}}
                   for s in cmp.funnel],
        "captions": {"old": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(a).items()},
                     "new": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(b).items()},
                     "concepts": cmp.concepts_note},
        "most_changed": [{"caption_id": p.caption_id, "old": p.old.id, "new": p.new.id,
                          "old_caption": p.old.caption, "new_caption": p.new.caption,
                          "pixels": _clean(p.pixels), "image_changed": p.image_changed,
                          "old_scores": {k: _clean(v) for k, v in p.old.scores.items()},
                          "new_scores": {k: _clean(v) for k, v in p.new.scores.items()}} for p in cmp.grid],
        "notes": cmp.notes,
    }


# --- the page ----------------------------------------------------------------------------------------

def _uri(data: bytes) -> str:
    from PIL import Image
    import io
    kind = (Image.open(io.BytesIO(data)).format or "png").lower()
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


def render_page(cmp: Comparison) -> str:
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    docs = {**cmp.old.docs, **cmp.new.docs}
    figures = [(name, _uri(plots.overlaid_histogram(name, [r.scores[name] for r in cmp.old.rows if name in r.scores],
                                                    [r.scores[name] for r in cmp.new.rows if name in r.scores],
                                                    docs.get(name, ""))))
               for name, _ in cmp.scores]
    pairs = [{"pair": p, "old_src": _uri(p.old.image), "new_src": _uri(p.new.image)} for p in cmp.grid]
    return env.get_template(TEMPLATE.name).render(
        generator=GENERATOR, cmp=cmp, figures=figures, pairs=pairs, num=_num, count=_count, rate=_rate,
        bootstrap=stats.BOOTSTRAP, seed=stats.SEED, listed=LISTED)


def check_output(out: Path) -> None:
    page = out / PAGE
    if out.exists() and not out.is_dir():
        raise InputError("--output", f"{out} is a file; give a folder for {PAGE}")
    if page.exists() and GENERATOR not in page.read_text(errors="replace")[:2000]:
        raise InputError("--output", f"{page} exists and is not a compare page; choose another folder")


def json_text(cmp: Comparison) -> str:
    import json
    return json.dumps(to_json(cmp), indent=2, ensure_ascii=False) + "\n"


def write(cmp: Comparison, out: Path) -> Path:
    """DIR/index.html (the page), DIR/compare.md, DIR/compare.json; returns the page."""
    try:  # checked before any work (destination.py), but the place may have changed since
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError("--output", f"cannot make {out}: {e.strerror or e}") from None
    atomic_write(out / MARKDOWN, to_markdown(cmp))
    atomic_write(out / JSON_FILE, json_text(cmp))
    atomic_write(out / PAGE, render_page(cmp))
    return out / PAGE
