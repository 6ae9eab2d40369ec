"""The build: claim the dir, curate captions, run pending shards on an executor,
select, and write the Hub-layout dataset. Rerunning the same command resumes.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from itertools import islice
from pathlib import Path

from tqdm.auto import tqdm

from . import __version__
from .config import Recipe
from .errors import BuildError
from .plan import fingerprint as recipe_fingerprint
from .plan import portable_dict, shard_ranges
from .select import Candidates, format_selection, select
from .workdir import WorkDir
from .worker import STAGES, read_scores

PACKAGES = ("torch", "diffusers", "transformers", "open_clip_torch", "datasets", "huggingface_hub",
            "pyarrow", "pillow", "scikit-image", "numpy")


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
    fp = recipe_fingerprint(recipe)
    executor = executor or recipe.execution.executor
    device = device or recipe.execution.device
    work = WorkDir(out)
    _preflight(recipe)  # before the dir is touched: a missing model must cost nothing
    mode = work.claim(fp, recipe.execution.shard_size, overwrite)
    try:
        finished = (out / "README.md").exists() and (out / "stats.json").exists()
        if mode == "resume" and finished and (out / "recipe.yaml").read_text() == recipe.text:
            stats = json.loads((out / "stats.json").read_text())
            say(f"{out} already holds this build (fingerprint {fp[:12]}); nothing to do")
            return BuildResult(out, stats["rows"], fp, stats)
        # Same data but an edited recipe (version, description, publish...): the shards are
        # reused below and the dataset files are rewritten to match the recipe.
        work.log("start", mode=mode, executor=executor, fingerprint=fp)
        caption_meta = _captions(recipe, work)
        shards = shard_ranges(caption_meta["count"], recipe.execution.shard_size)
        pending = []
        for i, _ in enumerate(shards):
            check = work.check_shard(i)
            if check.ok:
                work.log("shard_skipped", shard=i)
            else:
                if check.reason != "not finished":
                    say(f"shard {i}: {check.reason}; regenerating it")
                    work.log("shard_invalid", shard=i, reason=check.reason)
                work.discard_shard(i)
                pending.append(i)
        if len(shards) - len(pending):
            say(f"resuming: {len(shards) - len(pending)} of {len(shards)} shards already done and verified")
        t0 = time.perf_counter()
        if pending:
            run_shards(recipe, work, shards, pending, executor, device)
        gen_wall = time.perf_counter() - t0
        return _finish(recipe, work, fp, caption_meta["funnel"], len(shards), gen_wall, executor, device)
    finally:
        work.release()


def run_shards(recipe, work, shards, pending, executor, device) -> None:
    ipc = recipe.generate.images_per_caption
    total = sum(shards[i][1] - shards[i][0] for i in pending) * ipc
    with tqdm(total=total, unit="img", desc="generating", dynamic_ncols=True) as bar:
        if executor == "ray":
            from .ray_executor import run_ray
            run_ray(recipe, work, shards, pending, device, bar)
            return
        from .worker import ShardWorker
        worker = ShardWorker(recipe, device)
        for i in pending:
            marker = worker.run(i, work.captions.shard(i), work, on_images=bar.update)
            work.log("shard_done", shard=i, rows=marker["rows"], seconds=marker["seconds"])


def _preflight(recipe: Recipe) -> None:
    """Fail before any work when a model can't be had (offline, not cached, wrong id)."""
    from .preflight import ModelUnavailable, check_clip_available, check_pipeline_available
    try:
        check_pipeline_available(recipe.generate.model, recipe.generate.revision)
        check_clip_available(recipe.score.clip.model, recipe.score.clip.pretrained)
    except ModelUnavailable as e:
        raise BuildError(str(e)) from None


def _captions(recipe: Recipe, work: WorkDir) -> dict:
    """Curate once, streaming to the work dir; a resumed build reuses the stored captions,
    so every shard keeps exactly the captions it started with."""
    meta = work.captions.meta() or _curate(recipe, work)
    if not meta["count"]:
        raise BuildError("no caption survived the caption filters; see `synthvlm-build captions` for the funnel")
    return meta


def _curate(recipe: Recipe, work: WorkDir) -> dict:
    from .captions import Funnel, iter_curate, recipe_tokenizer
    funnel = Funnel()
    survivors = iter_curate(recipe.captions, tokenizer=recipe_tokenizer(recipe), funnel=funnel)
    with tqdm(survivors, desc="captions", unit="caption", dynamic_ncols=True) as bar:
        meta = work.captions.write(bar, funnel.to_dict, recipe.execution.shard_size)
    say(f"captions: {meta['count']:,} kept of {meta['funnel']['read']:,} read")
    return meta


def _finish(recipe, work, fp, caption_funnel, n_shards, gen_wall, executor, device) -> BuildResult:
    from . import card as cardlib
    from .dataset import selected_rows, write_parquet

    scores = read_scores(work, n_shards)
    cols = {name: scores.column(name).to_numpy(zero_copy_only=False) for name in scores.column_names}
    cand = Candidates(id=cols["id"].astype(str), caption_id=cols["caption_id"].astype(str),
                      clip_score=cols["clip_score"], ssim=cols["ssim"], score=cols["score"])
    selection = select(cand, recipe.select)
    chosen = set(selection.ids)
    shard_files = [work.shard_path(i) for i in range(n_shards)]

    staging = work.root / "final"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    data_files, info = write_parquet(staging, lambda: selected_rows(shard_files, chosen, recipe), recipe, fp,
                                     cache_dir=work.root / "hf-cache")
    markers = [work.marker(i) for i in range(n_shards)]
    stats = _stats(recipe, fp, caption_funnel, selection.funnel, markers, gen_wall, len(selection.ids))
    picked = {k: v[selection.mask] for k, v in (("clip_score", cand.clip_score), ("ssim", cand.ssim),
                                                ("score", cand.score))}
    cardlib.plot_histogram(staging / cardlib.HISTOGRAM, cand.score, picked["score"])
    # The first selected rows in plan order: found in the first shard(s), not a second full pass.
    first = islice(selected_rows(shard_files, set(selection.ids[:16]), recipe), 16)
    samples = [r["image"]["bytes"] for r in first]
    cardlib.sample_grid(staging / cardlib.SAMPLES, samples)
    card = cardlib.render(recipe, fp, info, len(selection.ids), caption_funnel, selection.funnel, picked,
                          recipe.publish.repo_id)
    (staging / "recipe.yaml").write_text(recipe.text)
    (staging / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (staging / "recipe.lock.json").write_text(json.dumps(_lock(recipe, fp, work, executor, device), indent=2) + "\n")
    (staging / "README.md").write_text(str(card))
    _publish_locally(staging, work.out)
    work.log("built", rows=len(selection.ids))
    say(_summary(recipe, work.out, stats, selection.funnel))
    return BuildResult(work.out, len(selection.ids), fp, stats)


def _publish_locally(staging: Path, out: Path) -> None:
    """Move the finished files into place; the card goes last, so a dir with a
    README.md is a finished build."""
    (out / "README.md").unlink(missing_ok=True)
    shutil.rmtree(out / "data", ignore_errors=True)
    for name in sorted(p.name for p in staging.iterdir()):
        if name != "README.md":
            os.replace(staging / name, out / name)
    os.replace(staging / "README.md", out / "README.md")
    staging.rmdir()


def _stats(recipe, fp, caption_funnel, selection_funnel, markers, gen_wall, rows) -> dict:
    stage = {k: round(sum(m["stage_seconds"][k] for m in markers), 3) for k in STAGES}
    images = sum(m["rows"] for m in markers)
    busy = sum(m["seconds"] for m in markers)
    return {"fingerprint": fp, "rows": rows, "captions": caption_funnel, "selection": selection_funnel,
            "timing": {"stage_seconds": stage, "shard_seconds": round(busy, 3),
                       "images": images, "images_per_second": round(images / busy, 3) if busy else None,
                       "this_run_generation_wall_seconds": round(gen_wall, 3)}}


def _lock(recipe, fp, work, executor, device) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["synthvlm-builder"] = __version__
    versions["python"] = platform.python_version()
    meta = work.captions.meta()
    portable = portable_dict(recipe)
    return {"fingerprint": fp, "recipe": portable,
            "captions": {"count": meta["count"], "sha256": meta["sha256"]},
            "models": {"generate": {**_model_lock(recipe.generate.model, recipe.generate.revision),
                                    "model": portable["generate"]["model"]},
                       "clip": portable["score"]["clip"]},
            "packages": versions,
            "build": {"executor": executor, "device": device, "batch_size": recipe.generate.batch_size,
                      "shard_size": recipe.execution.shard_size}}


def _model_lock(model: str, revision: str | None) -> dict:
    """Record the exact weights: the Hub commit a revision resolved to, or a local dir's config hash."""
    entry = {"model": model, "revision": revision}
    if model.startswith("builtin:"):
        from . import builtin
        entry["builtin_version"] = builtin._VERSION
    elif os.path.isdir(model):
        entry["model_index_sha256"] = hashlib.sha256(Path(model, "model_index.json").read_bytes()).hexdigest()
    else:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(model, "model_index.json", revision=revision)
        if isinstance(cached, str) and "/snapshots/" in cached:
            entry["resolved_commit"] = cached.split("/snapshots/")[1].split("/")[0]
    return entry


def _summary(recipe, out: Path, stats: dict, selection_funnel: dict) -> str:
    t = stats["timing"]
    per_stage = ", ".join(f"{k} {v:.1f}s" for k, v in t["stage_seconds"].items())
    return "\n".join([
        f"built {stats['rows']:,} rows -> {out}",
        "selection:", format_selection(selection_funnel),
        f"time: {per_stage} ({t['images']:,} images)",
        "load it with:",
        f"  from datasets import load_dataset; ds = load_dataset({str(out)!r}, split='train')",
    ])
