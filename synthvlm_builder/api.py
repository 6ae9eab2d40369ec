"""The Python API (README "Python API"): each verb of the CLI as a function that returns an object.

    recipe = Recipe.from_yaml("recipes/quickstart.yaml")     # or Recipe.from_dict({...}, base_dir=...)
    result = build(recipe)                                    # BuildResult: .dataset .stats .path .rows
    captions(recipe), plan(recipe), verify(dir), publish(dir), export(dir, "llava", out)

Nothing here prints: messages and progress bars go to the reporter in use (reporter.py; standard error
unless the `reporter=` argument or `reporter.use(...)` says otherwise). Errors are RecipeError,
InputError and BuildError (errors.py) exactly as the CLI reports them; an InputError about a recipe
field carries its located Problem in `.problems`. A recipe argument may also be a YAML file's path.
The CLI (cli.py) calls these functions and prints what they return.
"""
from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

from .errors import InputError
from .recipe.config import Caption, Recipe
from .reporter import Reporter, use
from .results import BuildResult, CaptionsResult, PlanResult

if TYPE_CHECKING:
    from .analysis.compare import Comparison
    from .analysis.evaluate import Evaluation
    from .builder import RecipeBuilder
    from .release.export import ExportResult
    from .release.publish import PublishResult
    from .release.verification import VerifyResult

RecipeLike = Union[Recipe, str, os.PathLike]
PathLike = Union[str, os.PathLike]


@contextmanager
def _call(recipe: Optional[Recipe], reporter: Optional[Reporter], check: bool = True) -> Iterator[None]:
    """One API call: messages to `reporter`, every SYNTHVLM_* variable checked first (as the CLI does;
    not with `check`), and an InputError about a recipe field located in `recipe` (flags, variables and
    DIR are not recipe fields)."""
    with use(reporter):
        try:
            if check:
                from .settings import check_environment
                check_environment()
            yield
        except InputError as e:
            if recipe is not None:
                from .recipe import locate_error
                locate_error(e, recipe)
            raise


def _recipe(recipe: RecipeLike) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, os.PathLike)):
        return Recipe.from_yaml(recipe)
    raise TypeError(f"a recipe is a Recipe or the path of a YAML file, not a {type(recipe).__name__}")


def build(recipe: RecipeLike, output_dir: Optional[PathLike] = None, executor: Optional[str] = None,
          device: Optional[str] = None, push: bool = False, overwrite: bool = False, *,
          reporter: Optional[Reporter] = None) -> BuildResult:
    """Build (or resume, or find already built) the dataset `recipe` describes, in `output_dir` (default:
    output.dir, else build/<name>-v<version>). With `push`, each data file is uploaded while the build
    runs and the release is published at the end (`.published`)."""
    started = time.perf_counter()
    recipe = _recipe(recipe)
    with _call(recipe, reporter):
        from .destination import FOLDER, check_output
        from .execution.preflight import check_cache
        from .storage import is_url, local_path
        out = output_dir if is_url(output_dir) else Path(local_path(output_dir)) if output_dir is not None else None
        if not is_url(out if out is not None else recipe.output.dir):  # a store is checked when it is opened
            check_output(out or recipe.output_dir, "--output" if out else "output.dir", FOLDER)
        check_cache(recipe)
        from .execution.runner import build as run_build
        done = run_build(recipe, output_dir=out, executor=executor, device=device, overwrite=overwrite, push=push)
        if push:
            from .analysis.changes import changes_since
            from .release.publish import publish as publish_dir
            done = dataclasses.replace(done, published=publish_dir(done.path, changes=changes_since))
    return dataclasses.replace(done, seconds=time.perf_counter() - started)


def identity(recipe: RecipeLike, *, reporter: Optional[Reporter] = None) -> str:
    """The content identity of the data `recipe` makes: its fingerprint joined with the digests of its
    input files (caption files are read, Hub sources resolved to commits). Same identity, same data."""
    recipe = _recipe(recipe)
    with _call(recipe, reporter):
        from .execution.identity import content_identity, input_digests
        from .execution.plan import fingerprint
        return content_identity(fingerprint(recipe), input_digests(recipe))


def iter_captions(recipe: RecipeLike, device: Optional[str] = None, *,
                  reporter: Optional[Reporter] = None) -> "CaptionStream":
    """The caption stage, streamed: iterate the surviving captions (each read once, memory stays flat);
    `.funnel` is complete once the stream is exhausted. Every source is opened and checked here."""
    recipe = _recipe(recipe)
    with _call(recipe, reporter):
        from .curation.captions import Funnel
        from .execution.curate import curate_recipe
        from .execution.preflight import check_cache
        check_cache(recipe, captions_only=True)
        funnel = Funnel()
        survivors = curate_recipe(recipe, funnel, device)
    return CaptionStream(recipe, funnel, survivors, reporter)


class CaptionStream:
    """Captions as the caption stage lets them through; each item is a Caption (id, text, source)."""

    def __init__(self, recipe: Recipe, funnel, survivors: Iterator[Caption], reporter: Optional[Reporter]):
        self.recipe, self._funnel, self._survivors, self._reporter = recipe, funnel, survivors, reporter

    @property
    def funnel(self) -> dict:
        """Counts per source and filter so far (all of them once the stream is exhausted)."""
        return self._funnel.to_dict()

    def __iter__(self) -> Iterator[Caption]:
        from .reporter import current
        # a bar once the stage takes more than a second (model steps, an LLM judge); a quick one stays silent
        with use(self._reporter):
            bar = current().progress(desc="captions", unit=" captions", delay=1)
        with bar:
            while True:  # each step reports to this call's reporter, and its errors are located, as in a call
                with _call(self.recipe, self._reporter, check=False):
                    caption = next(self._survivors, None)
                if caption is None:
                    return
                bar.update(1)
                yield caption


def captions(recipe: RecipeLike, output: Optional[PathLike] = None, device: Optional[str] = None, *,
             reporter: Optional[Reporter] = None) -> CaptionsResult:
    """Run only the caption stage. Without `output` the survivors are returned in `.captions`; with it
    they are streamed to that JSONL file ({"id", "text", "source"} per line, written atomically)."""
    recipe = _recipe(recipe)
    target = None
    if output is not None:
        with _call(recipe, reporter):
            target = _captions_output(Path(output), recipe)
    stream = iter_captions(recipe, device, reporter=reporter)
    if target is None:
        kept = list(stream)
        return CaptionsResult(stream.funnel, kept, len(kept), None)
    from .curation.captions import write_jsonl
    from .errors import UnsafeOutput
    try:
        count = write_jsonl(stream, target)
    except UnsafeOutput as e:  # made since the check: the argument still names it
        raise InputError("--output", e.message) from None
    return CaptionsResult(stream.funnel, None, count, target)


def _captions_output(out: Path, recipe: Recipe) -> Path:
    from .destination import FILE, check_output
    check_output(out, "--output", FILE)
    for i, src in enumerate(recipe.captions.sources):
        if out.exists() and Path(src.path).exists() and os.path.samefile(out, src.path) \
                or out.resolve() == Path(src.path).resolve():
            raise InputError("--output", f"{out} is the recipe's caption source captions.sources[{i}];"
                             " writing it would overwrite the input: choose another file")
    return out


def plan(recipe: RecipeLike, measure: bool = False, device: Optional[str] = None, *,
         reporter: Optional[Reporter] = None, nodes: Optional[int] = None) -> PlanResult:
    """The resolved recipe, fingerprint, shard plan, counts and compute estimate; loads no model unless
    `measure`, which times a few denoising steps on `device` (default execution.device). With `nodes`,
    the shards spread over that many nodes (and with `measure`, the wall time)."""
    recipe = _recipe(recipe)
    if nodes is not None and (isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 100_000):
        raise InputError("--nodes", f"must be a whole number from 1 to 100000, got {nodes!r}")
    with _call(recipe, reporter):
        from .execution.plan import make_plan
        shards = make_plan(recipe, per_caption=_earlier_rounds(recipe))
        measured = None
        if measure:
            from .execution import measure as m
            from .execution.preflight import check_cache, check_device, preflight
            check_device(device or recipe.execution.device, "--device" if device else "execution.device")
            check_cache(recipe)
            preflight(recipe)
            captions = m.measure_captions(recipe, device) if recipe.generate.adaptive else []
            timed = m.measure(recipe, device, tuple(c.text for c in captions))
            rounds = m.measure_rounds(recipe, device, captions) if captions else None
            if rounds:  # adaptive best-of-k: the expected count from the rounds just made
                shards = make_plan(recipe, per_caption=(rounds["mean"], m.measured_from(rounds)))
            m.save(recipe, timed, rounds, shards.fingerprint)
            expected = shards.expected_candidates
            measured = m.estimate(timed, shards.candidates if expected is None else expected)
            if rounds:
                measured["rounds"] = rounds
        spread = None
        if nodes is not None:
            from .execution.measure import spread as spread_shards
            spread = spread_shards(shards.shards, recipe.generate.images_per_caption, nodes, measured)
    return PlanResult(recipe, shards, measured, spread)


def _earlier_rounds(recipe: Recipe):
    """(mean candidates per caption, where from) of the build installed in an adaptive recipe's output dir
    (this recipe's, or an earlier version's); None when there is none."""
    if not recipe.generate.adaptive:
        return None
    from .execution.rounds import mean_candidates
    from .layout import STATS
    from .state import StateError, load
    path = recipe.output_dir / STATS
    try:
        stats = load(path, "stats") if path.is_file() else {}
    except (OSError, StateError):
        return None
    hist = stats.get("candidates_per_caption")
    mean = mean_candidates(hist) if isinstance(hist, dict) else None
    return None if mean is None else (mean, f"{mean:.2f} per caption in the build at {path.parent}")


def verify(target: PathLike, revision: Optional[str] = None, sample: int = 8, seed: int = 0,
           device: Optional[str] = None, *, reporter: Optional[Reporter] = None) -> "VerifyResult":
    """Regenerate `sample` rows (chosen by `seed`) of a build dir or a Hub release (ORG/NAME at
    `revision`) from its lock and compare pixels and scores; `.ok` is True when every row matches."""
    with _call(None, reporter):
        for name, value, least in (("sample", sample, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(name, f"must be a whole number of at least {least}, got {value!r}")
        from .release.verify import verify as verify_build
        from .storage import is_url
        target = _build_dir(target, "TARGET") if is_url(target) else target
        return verify_build(os.fspath(target), revision=revision, sample=sample, seed=seed, device=device)


def rebuild(target: PathLike, revision: Optional[str] = None, output_dir: Optional[PathLike] = None,
            device: Optional[str] = None, overwrite: bool = False, *,
            reporter: Optional[Reporter] = None) -> BuildResult:
    """Build a release again from its own files: a build dir, a downloaded release, or a Hub dataset id at
    `revision`; its recipe.lock.json, recipe.yaml, stats.json and curated captions.jsonl, not the caption
    sources (execution/rebuild.py). Same fingerprint and content identity, the same rows. `output_dir`
    defaults to `<DIR>-rebuilt` beside a local release, else build/<name>-v<version>."""
    started = time.perf_counter()
    with _call(None, reporter):
        from .execution.rebuild import rebuild as rebuild_release
        done = rebuild_release(os.fspath(target), revision=revision,
                               output_dir=Path(output_dir) if output_dir is not None else None, device=device,
                               overwrite=overwrite)
    return dataclasses.replace(done, seconds=time.perf_counter() - started)


def publish(build_dir: PathLike, repo_id: Optional[str] = None, *,
            reporter: Optional[Reporter] = None) -> "PublishResult":
    """Push a finished build to the Hub as one commit and tag it v<version> (a no-op when that tag already
    holds this build); `repo_id` defaults to the recipe's publish.repo_id. When the repository holds an
    earlier version, the card gets a section "Changes since v<that version>" (analysis/changes.py)."""
    with _call(None, reporter):
        from .analysis.changes import changes_since
        from .release.publish import publish as publish_dir
        return publish_dir(_build_dir(build_dir, "DIR"), repo_id=repo_id, changes=changes_since)


def _whole(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(name, f"must be a whole number of at least {least}, got {value!r}")
    return value


def compare(old: PathLike, new: PathLike, captions: int = 16, output: Optional[PathLike] = None, grid: int = 8,
            device: Optional[str] = None, offline: bool = False, *,
            reporter: Optional[Reporter] = None) -> "Comparison":
    """What a change does to the data. `old` and `new` are each a finished build dir, a Hub release
    "ORG/NAME@vX.Y.Z", or a recipe (a YAML path or "REV:PATH": its first `captions` curated captions through
    the real pipeline). With `output`, writes the page (index.html), compare.md and compare.json there.
    `.exit_code` is diff's; `.markdown()`, `.to_json()`; `offline` refuses recipes that need the network."""
    with _call(None, reporter):
        _whole("--captions", captions, 1)
        _whole("--grid", grid, 0)
        from .analysis import report
        from .analysis.compare import compare as compare_sides
        from .analysis.sides import check_side, load_side
        out = None
        if output is not None:
            from .destination import FILE, FOLDER, check_output
            out = check_output(output, "--output", FOLDER)
            check_output(out / report.PAGE, "--output", FILE)
            report.check_output(out)
        specs = [(os.fspath(old), "OLD"), (os.fspath(new), "NEW")]
        checked = [check_side(spec, what, offline) for spec, what in specs]  # both before either runs
        sides = [load_side(spec, what, c, captions, device) for (spec, what), c in zip(specs, checked)]
        result = compare_sides(*sides, grid)
        if out is not None:
            result.page = report.write(result, out)
        return result


def evaluate(target: PathLike, eval: Optional[PathLike] = None, seeds: int = 3, steps: int = 300,
             batch_size: int = 64, image_size: int = 32, eval_size: int = 300, device: str = "cpu",
             threads: Optional[int] = None, card: bool = False, *,
             reporter: Optional[Reporter] = None) -> "Evaluation":
    """Train a small CLIP from scratch on the image-caption pairs of `target` (a build dir, a folder of
    Parquet files with image and caption, or "ORG/NAME[@REV]") for `steps` batches, once per seed
    0..seeds-1, and measure zero-shot retrieval on `eval` (the same kinds), by default for shapes-world data
    `eval_size` rendered held-out scenes. `card`: add the result to the build dir's card."""
    with _call(None, reporter):
        for name, value, least in (("--seeds", seeds, 1), ("--steps", steps, 1), ("--batch-size", batch_size, 2),
                                   ("--image-size", image_size, 8), ("--eval-size", eval_size, 2)):
            _whole(name, value, least)
        if threads is not None:
            _whole("--threads", threads, 1)
        if image_size % 4:
            raise InputError("--image-size", f"must be a multiple of 4 (the patch size), got {image_size}")
        from .analysis.evaluate import add_to_card, check_card, evaluate as run
        from .analysis.proxy import ProxyConfig
        from .execution.runner import check_device
        check_device(device, "--device")
        build_dir = check_card(os.fspath(target)) if card else None
        cfg = ProxyConfig(steps=steps, batch_size=batch_size, image_size=image_size)
        result = run(os.fspath(target), None if eval is None else os.fspath(eval), tuple(range(seeds)), cfg,
                     eval_size, device, threads)
        if build_dir is not None:
            result.card = add_to_card(build_dir, result)
        return result


def _build_dir(build_dir: PathLike, field: str) -> Path:
    """A finished build to read: a local dir, or a local copy of one in object storage (`s3://...`)."""
    from .storage import is_url, local_path
    if not is_url(build_dir):
        return Path(local_path(build_dir))
    from .execution.remote import pull_release
    from .storage import open_store
    return pull_release(open_store(build_dir, field), field)


def as_builder(recipe: Recipe, **options) -> "RecipeBuilder":
    """This recipe as a `datasets.DatasetBuilder` (builder.py; `options`: cache_dir, build_dir, executor,
    device, reporter): `download_and_prepare()` runs or resumes the build, `as_dataset()` reads its rows."""
    from .builder import RecipeBuilder
    return RecipeBuilder(recipe, **options)


Recipe.as_builder = as_builder  # `recipe.as_builder()` (README); recipe/config.py says why it is attached here


# Export formats and the options each takes (the CLI's --FORMAT OUT and option flags).
def export(build_dir: PathLike, fmt: str, out: PathLike, *, reporter: Optional[Reporter] = None,
           **options) -> "ExportResult":
    """Write a finished build in another layout into the new (or empty) folder `out`, with an exporter
    (release/exporters/, or a plugin's): "llava" (OUT/synthvlm.json + OUT/images/), "webdataset" (tar
    shards; shard_size=N samples or shard_bytes=B per tar, B an int or a string such as "1GB"), ...
    Returns what was written (`.count`, `.paths`)."""
    with _call(None, reporter):
        from .registry import registry
        exporter = registry().find("exporter", fmt)
        if exporter is None:
            raise InputError("format", f"{fmt!r} is not an export format; the formats are"
                             f" {', '.join(registry().names('exporter'))}")
        parsed = _export_options(exporter, options)
        from .destination import NEW_FOLDER, check_output
        build_dir = _build_dir(build_dir, "DIR")
        folder = check_output(out, f"--{fmt}", NEW_FOLDER, outside=build_dir)
        return exporter.export(build_dir, folder, **parsed)


def _export_options(exporter, options: dict) -> dict:
    known = {opt.dest: opt for opt in exporter.options}
    parsed = {}
    for name, value in options.items():
        if name not in known:
            takes = f"its options are {', '.join(known)}" if known else "it takes no options"
            raise InputError(name, f"is not an option of the {exporter.name} export ({takes})")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InputError(name, f"{value!r} is not a positive number")
        parsed[name] = known[name].parse(value, name)
    exporter.check(parsed)
    return parsed
