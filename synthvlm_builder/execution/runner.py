"""The build: check every input, take the output dir, curate captions, run pending shards on an
executor, then hand the candidates to release/ for selection and the Hub-layout dataset, swapped in
only when complete. Rerunning the same command resumes.

Order matters (README "Reliability"): the device, the models and the input files are checked before
the output dir is touched; its lock is taken before anything in it changes; an earlier build in it is
replaced only by a complete new one, and only the files it made are removed.
"""
from __future__ import annotations

import time
from pathlib import Path

from .. import reporter
from ..errors import InputError
from ..layout import BUILD_FILES, RECIPE, SHARDS, STATS, is_finished
from ..recipe import Recipe
from ..results import BuildResult
from ..state import StateError, load
from .context import BuildContext, Curated
from .curate import curate_build
from .identity import build_key, content_identity, input_digests
from .outdir import Contents, OutputDir
from .plan import fingerprint as recipe_fingerprint
from .plan import shard_ranges
from .preflight import check_device, preflight


def build(recipe: Recipe, output_dir: Path | None = None, executor: str | None = None,
          device: str | None = None, overwrite: bool = False, push: bool = False,
          curated: Curated | None = None) -> BuildResult:
    """With `push`, the destination is checked before any work and each data file is uploaded as soon
    as it is final (release/stream.py); the caller publishes the finished build. With `curated`, the
    caption stage is not run: those captions are the build's (its models and sources are not checked)."""
    target = output_target(output_dir, recipe)
    device_name = device or recipe.execution.device
    check_device(device_name, "--device" if device else "execution.device")
    preflight(recipe, captions=curated is None)
    fp = recipe_fingerprint(recipe)
    inputs = dict(curated.inputs) if curated else input_digests(recipe)
    identity = content_identity(fp, inputs)
    key = build_key(identity, recipe.execution.shard_size)
    target.check_usable()
    target.lock()  # from here on this run owns the dir; nothing in it has changed yet
    failed, uploader = True, None
    try:
        if target.finish_install(discard_corrupt=overwrite):
            where = getattr(target, "url", target.out)  # a bucket's URL, not its local copy (remote.py)
            reporter.info(f"completed the install an earlier run left unfinished in {where}")
        _admit(target, target.contents(overwrite), identity, inputs, key, recipe, overwrite)
        work = target.work_dir(key)
        ctx = BuildContext(recipe, fp, identity, inputs, target, work, executor or recipe.execution.executor,
                           device_name, curated=curated)
        done = _already_built(ctx)
        if done:
            failed = False
            return done
        if push:
            from ..release.stream import open_stream
            uploader = open_stream(recipe, fp, identity, work.root)
        resumed = work.prepare({"fingerprint": fp, "identity": identity, "inputs": inputs,
                                "shard_size": recipe.execution.shard_size})
        work.log("start", mode="resume" if resumed else "new", executor=ctx.executor, identity=identity)
        ctx.caption_meta = curate_build(ctx)
        pending = _pending_shards(ctx)
        stream = None
        if recipe.select.get("budget"):  # an accepted-rows target: no shard past the one reaching it
            from .target import Target
            stream = Target(ctx)
            ctx.enough = stream.enough
            if stream.enough():
                pending = []
        t0 = time.perf_counter()
        if pending:
            run_shards(ctx, pending)
        ctx.generation_seconds = time.perf_counter() - t0
        if stream is not None:
            ctx.shards_used = stream.shards_needed()
        from ..release.assemble import assemble
        rows, stats = assemble(ctx, uploader)
        target.drop_other_builds(keep=key)
        failed = False
        return BuildResult(ctx.out, rows, fp, stats, url=getattr(target, "url", None))
    finally:
        if failed and uploader is not None:
            uploader.abandon()
        target.release(failed=failed)


def output_target(output_dir, recipe: Recipe) -> OutputDir:
    """The output: a local dir, or (`s3://...`, any fsspec URL) a store worked on through a local copy."""
    field = "--output" if output_dir else "output.dir"
    where = output_dir if output_dir else recipe.output.dir
    from ..storage import is_url, local_path
    if is_url(where):
        from ..storage import open_store
        from .remote import RemoteOutput
        return RemoteOutput(open_store(where, field), field)
    return OutputDir(Path(local_path(where)) if output_dir else recipe.output_dir, field)


def _admit(target: OutputDir, here: Contents, identity: str, inputs: dict, key: str, recipe: Recipe,
           overwrite: bool) -> None:
    """Refuse a dir holding another build (unless --overwrite) and, with --overwrite, a dir holding
    files no build made: replacing the build must never remove them."""
    installed = here.installed["identity"] if here.installed else None
    others = {k: s for k, s in here.builds.items() if k != key}
    valuable = [k for k in others if any((target.build_root(k) / SHARDS).glob("*.done.json"))]
    if here.legacy or (installed and installed != identity) or valuable:
        if not overwrite:
            what = _describe_other(here, others, identity, inputs, recipe)
            raise InputError(target.field, f"{target.out} holds {what};"
                             " pass --overwrite to replace it once the new build is complete, or build into"
                             " another --output")
        if here.foreign:
            shown = ", ".join(here.foreign[:10]) + (f" and {len(here.foreign) - 10} more" if len(here.foreign) > 10
                                                    else "")
            raise InputError(target.field, f"{target.out} holds files no synthvlm build made ({shown});"
                             " --overwrite replaces only what a build made: move them away first")
    blocked = target.in_the_way(list(BUILD_FILES))
    if blocked:  # the install would have to replace them: refused now rather than after the work
        raise InputError(target.field, f"{target.out} holds {', '.join(blocked)}, which no synthvlm build made and a"
                         " build would replace; move it away first")
    if overwrite:  # work state that cannot be read (corrupt state) is discarded, as the refusal without it said
        from ..atomic import remove
        for k in [k for k, state in here.builds.items() if state.get("corrupt")]:
            remove(target.build_root(k))


def _describe_other(here: Contents, others: dict, identity: str, inputs: dict, recipe: Recipe) -> str:
    if here.legacy:
        return "a build made by an older synthvlm-builder"
    fingerprint = recipe_fingerprint(recipe)
    states = list(others.values()) + ([here.installed] if here.installed else [])
    for state in states:
        if state.get("fingerprint") != fingerprint:
            return (f"another recipe's build (fingerprint {str(state.get('fingerprint'))[:12]}, this recipe has"
                    f" {fingerprint[:12]})")
    for state in others.values():
        if state.get("identity") == identity and state.get("shard_size") != recipe.execution.shard_size:
            return f"a build with execution.shard_size {state.get('shard_size')} (now {recipe.execution.shard_size})"
    for state in states:
        changed = sorted(k for k, v in inputs.items() if (state.get("inputs") or {}).get(k) != v)
        if changed:
            return f"a build of this recipe from other input content ({', '.join(changed)} changed since)"
    return "another build"


def _already_built(ctx: BuildContext) -> BuildResult | None:
    """The installed build when it is this one, intact; None to build (or assemble) it again."""
    from ..text import printable
    out, here = ctx.out, ctx.target.contents(overwrite=True)  # _admit refused a corrupt record already
    if not (here.installed and here.installed.get("identity") == ctx.identity and is_finished(out)):
        return None
    try:
        if (out / RECIPE).read_text() != ctx.recipe.text:
            return None
        stats = load(out / STATS, "stats")
    except (OSError, UnicodeError, StateError) as e:
        reporter.note(f"{printable(e)}; assembling this build's files again")
        return None
    url = getattr(ctx.target, "url", None)  # a build in object storage (remote.py): out is its local copy
    reporter.info(f"{url or out} already holds this build (identity {ctx.identity[:12]}); nothing to do")
    return BuildResult(out, stats["rows"], ctx.fingerprint, stats, action="exists", url=url)


def _pending_shards(ctx: BuildContext) -> list[int]:
    """Shards still to generate: a finished shard is verified against its marker and skipped."""
    work, pending = ctx.work, []
    for i in range(ctx.n_shards):
        check = work.check_shard(i)
        if check.ok:
            work.log("shard_skipped", shard=i)
            continue
        if check.reason != "not finished":
            reporter.info(f"shard {i}: {check.reason}; regenerating it")
            work.log("shard_invalid", shard=i, reason=check.reason)
        work.discard_shard(i)
        pending.append(i)
    if ctx.n_shards - len(pending):
        reporter.info(f"resuming: {ctx.n_shards - len(pending)} of {ctx.n_shards} shards already done and verified")
    return pending


def run_shards(ctx: BuildContext, pending: list[int]) -> None:
    """The pending shards, on the build's executor (execution/executors/)."""
    from ..registry import registry
    from .batching import BatchSize
    recipe, work = ctx.recipe, ctx.work
    shards = shard_ranges(ctx.caption_meta["count"], recipe.execution.shard_size)
    total = sum(shards[i][1] - shards[i][0] for i in pending) * recipe.generate.max_candidates
    sizes = BatchSize(work.root, recipe.generate.batch_size)
    executor = registry().get("executor", ctx.executor)
    executor.run(ctx, pending, sizes, lambda: reporter.progress(total=total, unit="img", desc="generating"))
