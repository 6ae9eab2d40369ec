"""`preview`: the recipe's real pipeline on its first N curated captions, as one self-contained page.

Curation is the build's, stopped once N captions survived (curate.py first_captions); generation and
scoring are a shard of the build's (worker.scratch_shard: its batches, adaptive rounds); selection is
stages/select.py with the recipe's thresholds and best-per-caption rule. The page (preview.html.j2)
inlines every image as a data: URI: no file beside it, no network, no script.
"""
from __future__ import annotations

import base64
from pathlib import Path

from .. import reporter
from ..atomic import atomic_write
from ..errors import InputError
from ..recipe import Recipe
from .plan import fingerprint

TEMPLATE = Path(__file__).with_name("preview.html.j2")
PAGE = "index.html"
GENERATOR = "synthvlm-build preview"  # in the page's <meta name="generator">: marks a page this verb wrote
MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def preview(recipe: Recipe, n_captions: int, out: Path, device: str | None = None) -> Path:
    from ..curation.captions import Funnel
    from .curate import first_captions
    from .preflight import check_device, preflight

    page = Path(out) / PAGE
    _check_output(Path(out), page)
    check_device(device or recipe.execution.device, "--device" if device else "execution.device")
    preflight(recipe)
    funnel = Funnel()
    captions = first_captions(recipe, n_captions, funnel)
    candidates, selection = run_candidates(recipe, captions, device or recipe.execution.device)
    html = render(recipe, funnel.to_dict(), len(captions), candidates, selection)
    try:  # checked before any work (destination.py), but the place may have changed since
        page.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError("--output", f"cannot make {page.parent}: {e.strerror or e}") from None
    atomic_write(page, html)
    return page


def _check_output(out: Path, page: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("--output", f"{out} is a file; give a folder for {PAGE}")
    if page.exists() and GENERATOR not in page.read_text(errors="replace")[:2000]:
        raise InputError("--output", f"{page} exists and is not a preview page; choose another folder")


def run_candidates(recipe: Recipe, captions, device: str) -> tuple[list[dict], object]:
    """Generate and score the candidates of `captions` as a build makes a shard of them (worker.scratch_shard:
    build batches, adaptive best-of-k's rounds), then select over them (the candidates as dicts: id,
    caption_id, caption, seed, image bytes, `src` data URI, scores, kept, reason)."""
    from ..stages.rows import scores as score_columns
    from ..stages.rows import selection_columns
    from ..stages.select import Candidates, select
    from .worker import ShardWorker, scratch_shard

    worker = ShardWorker(recipe, device)
    names = score_columns(recipe)
    total = None if recipe.generate.adaptive else len(captions) * recipe.generate.max_candidates  # rounds decide
    with reporter.progress(total=total, desc="generating and scoring", unit="img") as bar:
        _, table = scratch_shard(worker, captions, on_images=bar.update)
    mime = MIME[recipe.format.image_format]
    rows = [{"id": r["id"], "caption_id": r["caption_id"], "caption": r["caption"], "seed": r["seed"],
             "image": r["image"], "src": f"data:{mime};base64,{base64.b64encode(r['image']).decode('ascii')}",
             "scores": {name: float(r[name]) for name in names}} for r in table.to_pylist()]
    cand = Candidates.from_table(table.select(list(selection_columns(recipe))), names)
    # The thresholds and best-per-caption decide per candidate and per caption, exactly as in a build; the
    # global top-`size` cut depends on the whole build, so the preview keeps every candidate that passes.
    selection = select(cand, recipe.select.replace(size=len(rows), allow_fewer=True), recipe.screen)
    for row, reason in zip(rows, selection.reasons):
        row["kept"], row["reason"] = not reason, reason
    return rows, selection


def render(recipe: Recipe, funnel: dict, n_captions: int, candidates: list[dict], selection) -> str:
    import jinja2
    from ..stages.rows import scores as score_columns
    from .plan import make_plan

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    g = recipe.generate
    plan = make_plan(recipe)
    return env.get_template(TEMPLATE.name).render(
        generator=GENERATOR, recipe=recipe, fingerprint=fingerprint(recipe), g=g, n_captions=n_captions,
        funnel=funnel, remaining=_remaining(funnel), candidates=candidates,
        selection_steps=selection.funnel["steps"][:-1],  # the last, top-`size` cut, is not previewed
        scores=score_columns(recipe), kept=int(sum(c["kept"] for c in candidates)), size=recipe.select.size,
        build_rows=plan.rows, build_candidates=plan.candidates)


def _remaining(funnel: dict) -> list[int]:
    """Captions left after each filter, in funnel order."""
    left, out = funnel["read"], []
    for f in funnel["filters"]:
        left -= f["dropped"]
        out.append(left)
    return out
