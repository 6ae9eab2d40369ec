"""From finished candidate shards to the dataset dir: select, write the Parquet files, the plots,
the card, stats.json and the lock into a staging folder in the build's work folder, then swap it
into the output dir (execution/outdir.py: only the files a build made are replaced)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import layout, reporter
from ..atomic import fsync_tree, remove
from ..execution.context import BuildContext
from ..execution.ledger import build_ledger, ledger_lines, ledger_markdown
from ..execution.measure import build_estimate, estimate_line
from ..execution.rounds import merge_histograms
from ..state import STAGES
from ..stages import rows
from ..stages.select import Candidates, Selection, format_selection, rank, select
from . import card as cardlib
from . import cardplots
from .dataset import selected_rows, write_parquet
from .lock import build_lock

if TYPE_CHECKING:  # stream.py loads the Hub client: only a build with --push needs it
    from .stream import StreamUploader

N_SAMPLES = cardplots.PER_SIDE_COLS * cardplots.PER_SIDE_ROWS  # best rows shown, and as many worst


def assemble(ctx: BuildContext, uploader: StreamUploader | None = None) -> tuple[int, dict]:
    """The build `ctx`, its shards all done, selected and installed in its output dir; with `uploader`
    (--push), each data file goes to the Hub as soon as it is final. Returns (rows, stats); `summary`
    says what was built."""
    recipe, work = ctx.recipe, ctx.work
    cand = read_candidates(work, ctx.n_shards, recipe)
    selection = select(cand, recipe.select, recipe.screen)
    shard_files = [work.shard_path(i) for i in range(ctx.n_shards)]

    staging = work.root / layout.STAGING
    remove(staging)  # what a killed run left (a link is unlinked, never followed)
    staging.mkdir()
    largest = max(work.marker(i).get("max_image_bytes", 0) for i in range(ctx.n_shards))
    with reporter.progress(selected_rows(shard_files, set(selection.ids), recipe), total=len(selection.ids),
                           desc="writing the dataset", unit=" rows") as written:
        _, info = write_parquet(staging, written, recipe, max_image_bytes=largest,
                                on_file=uploader.submit if uploader else None)
    stats = build_stats(ctx, selection)
    picked = {name: cand.scores[name][selection.mask] for name in rows.scores(recipe)}
    cardplots.plot_histograms(staging / layout.HISTOGRAM, cand.scores, picked,
                              {c.name: c.doc for c in rows.columns(recipe)})
    best, worst = _best_and_worst(ctx, cand, selection, shard_files)
    cardplots.sample_grid(staging / layout.SAMPLES, best, worst, len(selection.ids), rows.scores(recipe))
    lock = build_lock(ctx)
    card = cardlib.render(recipe, ctx.fingerprint, info, len(selection.ids), ctx.caption_meta["funnel"],
                          selection.funnel, picked, lock,
                          cost=ledger_markdown(stats["ledger"], stats.get("candidates_per_caption")))
    shutil.copyfile(work.captions.path, staging / layout.CAPTIONS)  # verify rebuilds batches from it
    (staging / layout.RECIPE).write_text(recipe.text)
    (staging / layout.STATS).write_text(json.dumps(stats, indent=2) + "\n")
    (staging / layout.LOCK).write_text(json.dumps(lock, indent=2) + "\n")
    (staging / layout.CARD).write_text(str(card))
    fsync_tree(staging)
    if uploader:  # the uploads ran while the card was made; the build counts as finished once they are done
        uploader.finish()
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    ctx.target.install(staging, files, {"identity": ctx.identity, "fingerprint": ctx.fingerprint,
                                        "inputs": ctx.inputs})
    work.log("built", rows=len(selection.ids))
    return len(selection.ids), stats


def read_candidates(work, n_shards: int, recipe) -> Candidates:
    """The selection columns of every candidate, in plan order."""
    table = work.read_columns(n_shards, rows.selection_columns(recipe), rows.candidate_schema(recipe))
    return Candidates.from_table(table, rows.scores(recipe))


def _best_and_worst(ctx: BuildContext, cand: Candidates, selection: Selection, shard_files: list[Path]
                    ) -> tuple[list[dict], list[dict]]:
    """The N_SAMPLES best selected rows (best first) and up to N_SAMPLES worst (worst last), without
    overlap; only the shards that hold them are read (a shard's candidates follow its marker's count)."""
    idx = np.flatnonzero(selection.mask)
    ranked = idx[rank(cand.id[idx], cand.score[idx])]  # best first, as selection ranks
    n_best = min(N_SAMPLES, -(-len(ranked) // 2))
    best_idx, worst_idx = ranked[:n_best], ranked[max(n_best, len(ranked) - N_SAMPLES):]
    wanted = np.concatenate([best_idx, worst_idx])
    ends = np.cumsum([ctx.work.marker(i)["rows"] for i in range(ctx.n_shards)])
    shards = sorted({int(i) for i in np.searchsorted(ends, wanted, side="right")})
    found = {r["id"]: r for r in selected_rows([shard_files[i] for i in shards], set(cand.id[wanted]), ctx.recipe)}
    return [found[cand.id[i]] for i in best_idx], [found[cand.id[i]] for i in worst_idx]


def build_stats(ctx: BuildContext, selection: Selection) -> dict:
    markers = [ctx.work.marker(i) for i in range(ctx.n_shards)]
    stage = {k: round(sum(m["stage_seconds"][k] for m in markers), 3) for k in STAGES}
    images = sum(m["rows"] for m in markers)
    busy = sum(m["seconds"] for m in markers)
    stats = {"fingerprint": ctx.fingerprint, "identity": ctx.identity, "rows": len(selection.ids),
             "captions": ctx.caption_meta["funnel"],
             "selection": selection.funnel,
             "timing": {"stage_seconds": stage, "shard_seconds": round(busy, 3),
                        "images": images, "images_per_second": round(images / busy, 3) if busy else None,
                        "this_run_generation_wall_seconds": round(ctx.generation_seconds, 3)}}
    if ctx.recipe.generate.adaptive:
        stats["candidates_per_caption"] = merge_histograms(m.get("candidates_per_caption") for m in markers)
    stats["ledger"] = build_ledger(ctx.recipe, markers, ctx.caption_meta["funnel"], ctx.work.root)
    # what `plan` and `plan --measure` estimated, beside the actual
    stats["ledger"]["estimate"] = build_estimate(ctx.recipe, ctx.fingerprint, ctx.inputs, markers,
                                                 ctx.caption_meta["count"], stats["ledger"])
    return stats


def _cost(stats: dict) -> list[str]:
    """The ledger's lines, with `plan`'s estimate beside the actual; a stats.json made before the ledger
    (an installed older build) has none."""
    ledger = stats.get("ledger")
    if not ledger:
        return []
    estimate = ledger.get("estimate") or {}
    lines = ledger_lines(ledger, estimate.get("gpu_hours_at_reference"))
    hist = stats.get("candidates_per_caption")
    if hist:
        lines.append("candidates per caption: " + ", ".join(f"{n}: {c:,}" for n, c in hist.items())
                     + f" (plan's bound: {estimate['images']:,} images)")
    if "actual" in estimate:  # a stats.json before the estimate held `plan --measure`'s figure has none
        lines.append(estimate_line(estimate))
    return lines


def summary(out: Path | str, stats: dict, selection_funnel: dict | None = None, seconds: float | None = None) -> str:
    """What the CLI prints after a build (the selection funnel is stats.json's own by default); `seconds`,
    the wall time of this run, from the start of the command to the dataset in place; `out` a URL for a
    build in object storage (README "Scaling out": storage_options)."""
    selection_funnel = stats["selection"] if selection_funnel is None else selection_funnel
    t = stats["timing"]
    per_stage = ", ".join(f"{k} {v:.1f}s" for k, v in t["stage_seconds"].items())
    total = f"{seconds:.1f}s in all; the shards' stages: " if seconds is not None else ""
    return "\n".join([
        f"built {stats['rows']:,} rows -> {out}",
        "selection:", format_selection(selection_funnel),
        f"time: {total}{per_stage} ({t['images']:,} images)",
        *_cost(stats),
        "load it with:",
        f"  from datasets import load_dataset; ds = load_dataset({str(out)!r}, split='train')"
        if "://" not in str(out) else  # a bucket: its data files, with the store's options (README "Scaling out")
        f"  from datasets import load_dataset; ds = load_dataset('parquet', data_files={out + '/data/*.parquet'!r},"
        " split='train', storage_options={...})",
    ])
