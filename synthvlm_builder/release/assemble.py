"""From finished candidate shards to the dataset dir: select, write the Parquet files, the plots,
the card, stats.json and the lock into a staging folder in the build's work folder, then swap it
into the output dir (execution/outdir.py: only the files a build made are replaced)."""
from __future__ import annotations

import json
import os
import shutil
import sys
from itertools import islice
from pathlib import Path

from ..atomic import fsync_tree
from ..execution.workdir import STAGES
from ..stages.rows import SCORES, SELECTION_COLUMNS
from ..stages.select import Candidates, Selection, format_selection, select
from . import card as cardlib
from . import layout
from .dataset import selected_rows, write_parquet
from .lock import build_lock

N_SAMPLES = 16


def assemble(ctx) -> tuple[int, dict]:
    """`ctx` is the runner's BuildContext. Returns (rows, stats)."""
    recipe, work = ctx.recipe, ctx.work
    scores = work.read_columns(ctx.n_shards, SELECTION_COLUMNS)
    cols = {name: scores.column(name).to_numpy(zero_copy_only=False) for name in scores.column_names}
    cand = Candidates(id=cols["id"].astype(str), caption_id=cols["caption_id"].astype(str),
                      scores={name: cols[name] for name in SCORES})
    selection = select(cand, recipe.select)
    shard_files = [work.shard_path(i) for i in range(ctx.n_shards)]

    staging = work.root / "final"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    largest = max(work.marker(i).get("max_image_bytes", 0) for i in range(ctx.n_shards))
    _, info = write_parquet(staging, lambda: selected_rows(shard_files, set(selection.ids), recipe), recipe,
                            ctx.fingerprint, cache_dir=work.root / "hf-cache", max_image_bytes=largest)
    stats = build_stats(ctx, selection)
    picked = {name: cand.scores[name][selection.mask] for name in SCORES}
    cardlib.plot_histogram(staging / layout.HISTOGRAM, cand.score, picked["score"])
    # The first selected rows in plan order: found in the first shard(s), not a second full pass.
    first = islice(selected_rows(shard_files, set(selection.ids[:N_SAMPLES]), recipe), N_SAMPLES)
    cardlib.sample_grid(staging / layout.SAMPLES, [r["image"]["bytes"] for r in first])
    card = cardlib.render(recipe, ctx.fingerprint, info, len(selection.ids), ctx.caption_meta["funnel"],
                          selection.funnel, picked)
    shutil.copyfile(work.captions.path, staging / layout.CAPTIONS)  # verify rebuilds batches from it
    (staging / layout.RECIPE).write_text(recipe.text)
    (staging / layout.STATS).write_text(json.dumps(stats, indent=2) + "\n")
    (staging / layout.LOCK).write_text(json.dumps(build_lock(ctx), indent=2) + "\n")
    (staging / layout.CARD).write_text(str(card))
    fsync_tree(staging)
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    ctx.target.install(staging, files, {"identity": ctx.identity, "fingerprint": ctx.fingerprint,
                                        "inputs": ctx.inputs})
    work.log("built", rows=len(selection.ids))
    print(summary(ctx.out, stats, selection.funnel), file=sys.stderr, flush=True)
    return len(selection.ids), stats


def build_stats(ctx, selection: Selection) -> dict:
    markers = [ctx.work.marker(i) for i in range(ctx.n_shards)]
    stage = {k: round(sum(m["stage_seconds"][k] for m in markers), 3) for k in STAGES}
    images = sum(m["rows"] for m in markers)
    busy = sum(m["seconds"] for m in markers)
    return {"fingerprint": ctx.fingerprint, "identity": ctx.identity, "rows": len(selection.ids),
            "captions": ctx.caption_meta["funnel"],
            "selection": selection.funnel,
            "timing": {"stage_seconds": stage, "shard_seconds": round(busy, 3),
                       "images": images, "images_per_second": round(images / busy, 3) if busy else None,
                       "this_run_generation_wall_seconds": round(ctx.generation_seconds, 3)}}


def summary(out: Path, stats: dict, selection_funnel: dict) -> str:
    t = stats["timing"]
    per_stage = ", ".join(f"{k} {v:.1f}s" for k, v in t["stage_seconds"].items())
    return "\n".join([
        f"built {stats['rows']:,} rows -> {out}",
        "selection:", format_selection(selection_funnel),
        f"time: {per_stage} ({t['images']:,} images)",
        "load it with:",
        f"  from datasets import load_dataset; ds = load_dataset({str(out)!r}, split='train')",
    ])
