"""The build: claim the dir, curate captions, run pending shards on an executor, then hand the
candidates to release/ for selection and the Hub-layout dataset. Rerunning the same command resumes.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import BuildError
from ..recipe import Recipe
from .plan import fingerprint as recipe_fingerprint
from .plan import shard_ranges
from .workdir import WorkDir


@dataclass
class BuildContext:
    """What every step of one build needs to know."""
    recipe: Recipe
    fingerprint: str
    work: WorkDir
    executor: str
    device: str
    caption_meta: dict | None = None
    generation_seconds: float = 0.0

    @property
    def out(self) -> Path:
        return self.work.out

    @property
    def n_shards(self) -> int:
        return len(shard_ranges(self.caption_meta["count"], self.recipe.execution.shard_size))


@dataclass
class BuildResult:
    output_dir: Path
    rows: int
    fingerprint: str
    stats: dict


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(recipe: Recipe, output_dir: Path | None = None, executor: str | None = None,
          device: str | None = None, overwrite: bool = False) -> BuildResult:
    out = Path(output_dir) if output_dir else recipe.output_dir
    ctx = BuildContext(recipe, recipe_fingerprint(recipe), WorkDir(out), executor or recipe.execution.executor,
                       device or recipe.execution.device)
    _preflight(recipe)  # before the dir is touched: a missing model must cost nothing
    mode = ctx.work.claim(ctx.fingerprint, recipe.execution.shard_size, overwrite)
    try:
        done = _already_built(ctx, mode)
        if done:
            return done
        # Same data but an edited recipe (version, description, publish...): the shards are
        # reused below and the dataset files are rewritten to match the recipe.
        ctx.work.log("start", mode=mode, executor=ctx.executor, fingerprint=ctx.fingerprint)
        ctx.caption_meta = _captions(ctx)
        pending = _pending_shards(ctx)
        t0 = time.perf_counter()
        if pending:
            run_shards(ctx, pending)
        ctx.generation_seconds = time.perf_counter() - t0
        from ..release.assemble import assemble
        rows, stats = assemble(ctx)
        return BuildResult(ctx.out, rows, ctx.fingerprint, stats)
    finally:
        ctx.work.release()


def _already_built(ctx: BuildContext, mode: str) -> BuildResult | None:
    from ..release.layout import CARD, RECIPE, STATS
    out = ctx.out
    finished = (out / CARD).exists() and (out / STATS).exists()
    if mode == "resume" and finished and (out / RECIPE).read_text() == ctx.recipe.text:
        stats = json.loads((out / STATS).read_text())
        say(f"{out} already holds this build (fingerprint {ctx.fingerprint[:12]}); nothing to do")
        return BuildResult(out, stats["rows"], ctx.fingerprint, stats)
    return None


def _pending_shards(ctx: BuildContext) -> list[int]:
    """Shards still to generate: a finished shard is verified against its marker and skipped."""
    work, pending = ctx.work, []
    for i in range(ctx.n_shards):
        check = work.check_shard(i)
        if check.ok:
            work.log("shard_skipped", shard=i)
            continue
        if check.reason != "not finished":
            say(f"shard {i}: {check.reason}; regenerating it")
            work.log("shard_invalid", shard=i, reason=check.reason)
        work.discard_shard(i)
        pending.append(i)
    if ctx.n_shards - len(pending):
        say(f"resuming: {ctx.n_shards - len(pending)} of {ctx.n_shards} shards already done and verified")
    return pending


def run_shards(ctx: BuildContext, pending: list[int]) -> None:
    recipe, work = ctx.recipe, ctx.work
    shards = shard_ranges(ctx.caption_meta["count"], recipe.execution.shard_size)
    ipc = recipe.generate.images_per_caption
    total = sum(shards[i][1] - shards[i][0] for i in pending) * ipc
    with tqdm(total=total, unit="img", desc="generating", dynamic_ncols=True) as bar:
        if ctx.executor == "ray":
            from .ray_executor import run_ray
            run_ray(recipe, work, shards, pending, ctx.device, bar)
            return
        from .worker import ShardWorker
        worker = ShardWorker(recipe, ctx.device)
        for i in pending:
            marker = worker.run(i, work.captions.shard(i), work, on_images=bar.update)
            work.log("shard_done", shard=i, rows=marker["rows"], seconds=marker["seconds"])


def _preflight(recipe: Recipe) -> None:
    """Fail before any work when a model can't be had (offline, not cached, wrong id)."""
    from ..models.preflight import ModelUnavailable, check_clip_available, check_pipeline_available
    try:
        check_pipeline_available(recipe.generate.model, recipe.generate.revision)
        check_clip_available(recipe.score.clip.model, recipe.score.clip.pretrained)
    except ModelUnavailable as e:
        raise BuildError(str(e)) from None


def _captions(ctx: BuildContext) -> dict:
    """Curate once, streaming to the work dir; a resumed build reuses the stored captions,
    so every shard keeps exactly the captions it started with."""
    meta = ctx.work.captions.meta() or _curate(ctx.recipe, ctx.work)
    if not meta["count"]:
        raise BuildError("no caption survived the caption filters; see `synthvlm-build captions` for the funnel")
    return meta


def _curate(recipe: Recipe, work: WorkDir) -> dict:
    from ..curation.captions import Funnel, iter_curate, recipe_tokenizer
    funnel = Funnel()
    survivors = iter_curate(recipe.captions, tokenizer=recipe_tokenizer(recipe), funnel=funnel)
    with tqdm(survivors, desc="captions", unit="caption", dynamic_ncols=True) as bar:
        meta = work.captions.write(bar, funnel.to_dict, recipe.execution.shard_size)
    say(f"captions: {meta['count']:,} kept of {meta['funnel']['read']:,} read")
    return meta
