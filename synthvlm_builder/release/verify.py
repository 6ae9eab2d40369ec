"""`verify`: regenerate a seeded sample of a finished build's rows from its recipe.lock.json and compare.

    lock -> recipe (checked against the lock's fingerprint) -> the lock's models (exit 2 if unloadable)
    captions.jsonl (checked against the lock's digest) -> shards and batches exactly as the build formed
    them (execution/worker.py: shard_items, batches) -> each sampled row's WHOLE batch regenerated and
    scored -> pixels and scores compared -> a VerifyResult (release/verification.py)

Pixels must be identical when the device type (and, on the CPU, the thread count) is the one the lock
records; otherwise they may differ by 1/255 (README "Reproducibility"): at most one level per pixel for
lossless formats, and on average for lossy ones, whose encoder spreads a one-level difference over its
8x8 blocks. Scores must agree within SCORE_TOLERANCE. Local model folders are looked up relative to the
current directory (the lock writes them relative to the recipe file).
"""
from __future__ import annotations

import io
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from .. import reporter
from ..atomic import sha256_file
from ..errors import BuildError, InputError
from ..stages.rows import scores as score_columns
from .. import layout
from .lock import read_lock
from .verification import RowCheck, VerifyResult

SCORE_TOLERANCE = 1e-4
LOSSLESS = ("png",)


def verify(target: str, revision: str | None = None, sample: int = 8, seed: int = 0,
           device: str | None = None) -> VerifyResult:
    started = time.perf_counter()
    build_dir, label = fetch_release(target, revision)
    lock = read_lock(build_dir)
    lock_path = build_dir / layout.LOCK
    written = lock_recipe(lock, build_dir)
    b = lock["build"]
    device = device or _default_device(b.get("device_types"))
    from ..execution.preflight import check_cache, check_device
    check_device(device, "--device")
    check_cache(written)
    recipe = check_models(written, lock, lock_path)  # first: exit 2 when the rows cannot be regenerated here
    check_fingerprint(written, lock, lock_path)
    captions = curated_captions(build_dir, lock)
    rows = _sample_rows(build_dir, sample, seed)

    groups, checks = _locate_batches(recipe, lock, lock_path, captions, rows)  # before loading a model
    built = (f"built on {', '.join(b.get('device_types') or ['unknown'])}{_threads(b.get('cpu_threads'))},"
             f" batch {b['batch_size']}, shards of {b['shard_size']} captions")
    worker, exact, where = None, False, ""
    if groups:  # no model is loaded when every sampled row already failed (its id names no candidate)
        from ..execution.worker import ShardWorker
        worker = ShardWorker(recipe, device)
        here = worker.where()
        exact = b.get("device_types") == [here["device_type"]] and (
            here["device_type"] != "cpu" or b.get("cpu_threads") == [here["cpu_threads"]])
        where = (f"regenerating on {here['device_type']}"
                 f"{_threads([here['cpu_threads']] if here['cpu_threads'] else [])}: pixels must be "
                 + ("identical" if exact else "within 1/255 (another device type or thread count)"))
    with reporter.progress(total=len(groups), desc="regenerating", unit="batch") if groups else nullcontext() as bar:
        for _, (batch, members) in sorted(groups.items()):
            published = worker.publish(worker.generate(batch))
            scores = worker.scores(batch, published)
            for pos, row in members:
                _compare(checks[row["id"]], row, published.raw[pos],
                         {k: float(scores[k][pos]) for k in score_columns(recipe)}, recipe, exact)
            bar.update(1)
    return VerifyResult(label, recipe.name, recipe.version, lock["fingerprint"], built, where, seed, len(groups),
                        [checks[r["id"]] for r in rows], time.perf_counter() - started)


def _default_device(built_on) -> str:
    """The device type the build used when this machine has it (pixels can then be identical), else auto."""
    from ..models.loading import resolve_device
    if built_on and len(built_on) == 1:
        try:
            return str(resolve_device(built_on[0]))
        except ValueError:
            pass
    return "auto"


def _threads(counts) -> str:
    return f" ({', '.join(map(str, counts))} CPU threads)" if counts else ""


# --- inputs ---------------------------------------------------------------------------------------

def fetch_release(target: str, revision: str | None, data: bool = True) -> tuple[Path, str]:
    """A local finished build dir, or a Hub release downloaded: its lock, recipe, captions and stats, and
    with `data` its data files (verify compares them; rebuild makes them again)."""
    path = Path(target)
    if path.exists():
        if revision:
            raise InputError("--revision", "applies to a Hub release; DIR_OR_REPO is a local folder")
        if data:
            layout.finished_build(path)
        elif not (path / layout.LOCK).is_file():
            raise InputError("DIR_OR_REPO", f"{path} is not a synthvlm build (it holds no {layout.LOCK})")
        return path, str(path)
    from ..models.ref import HUB_ID
    if not HUB_ID.match(target):
        raise InputError("DIR_OR_REPO", f"{target}: no such folder, and not a Hub dataset id ORG/NAME")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    label = f"{target}@{revision or 'main'}"
    try:
        wanted = [layout.LOCK, layout.RECIPE, layout.CAPTIONS, layout.STATS] + ([f"{layout.DATA}/*"] if data else [])
        folder = snapshot_download(target, repo_type="dataset", revision=revision, allow_patterns=wanted)
    except RevisionNotFoundError:
        raise InputError("--revision", f"{target} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise InputError("DIR_OR_REPO", f"no dataset {target} on the Hub (or no access with this token)") from None
    except Exception as e:  # network, offline mode, server errors: not the user's input
        raise BuildError(f"cannot download {label}: {type(e).__name__}: {e}") from None
    folder = Path(folder)
    if not (folder / layout.LOCK).is_file() or (data and not layout.data_files(folder)):
        raise InputError("DIR_OR_REPO", f"{label} holds no synthvlm build ({layout.LOCK} and {layout.DATA}/)")
    return folder, label


def lock_recipe(lock: dict, build_dir: Path):
    from ..recipe import recipe_from_dict
    try:  # the lock's own fields were checked against its schema (lock.py: read_lock)
        return recipe_from_dict(lock["recipe"], Path.cwd())
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError("recipe", f"the lock's recipe is not readable ({type(e).__name__}: {e})",
                         location=str(build_dir / layout.LOCK)) from None


def check_fingerprint(recipe, lock: dict, lock_path: Path) -> None:
    from ..execution.plan import fingerprint
    if fingerprint(recipe) != lock["fingerprint"]:
        raise BuildError(f"{lock_path}: its recipe has fingerprint {fingerprint(recipe)[:12]}, the lock records"
                         f" {lock['fingerprint'][:12]}: the lock was edited, or made by a synthvlm-builder with"
                         " another data format")


def check_models(recipe, lock: dict, lock_path: Path):
    """The recipe to regenerate with (a Hub model pinned to the commit the lock records), or exit 2
    unless the exact weights the lock names can be loaded here."""
    import dataclasses

    from ..models.digests import COMMIT
    from ..models.preflight import ModelUnavailable
    from ..models.ref import HUB, ModelRef
    from ..models.uses import check_available, digest
    from ..recipe import recipe_to_dict
    from ..recipe.components import model_uses
    inputs = lock.get("inputs") or {}
    recorded = str(inputs.get("generate.model", ""))
    if ModelRef.parse(recipe.generate.model).kind == HUB and COMMIT.match(recorded.removeprefix("commit:")):
        recipe = dataclasses.replace(recipe, generate=dataclasses.replace(
            recipe.generate, revision=recorded.removeprefix("commit:")))
    for use in model_uses(recipe_to_dict(recipe)):  # every model that makes or scores an image
        if use.digest is None or use.at[:2] == ("captions", "filters"):
            continue
        try:
            check_available(use)
            here = digest(use)
        except (ModelUnavailable, OSError) as e:
            raise InputError(use.digest, f"cannot load the model the lock names: {e}",
                             location=str(lock_path)) from None
        if inputs.get(use.digest) and inputs[use.digest] != here:
            raise InputError(use.digest, f"the lock names weights {inputs[use.digest]}, but {here} would be loaded"
                             " here; the rows cannot be regenerated with other weights", location=str(lock_path))
    return recipe


def curated_captions(build_dir: Path, lock: dict) -> list:
    from ..curation.captions import parse_caption_line
    path = build_dir / layout.CAPTIONS
    if not path.is_file():
        raise InputError("DIR_OR_REPO", f"{path.name} is missing: this build was made by a synthvlm-builder that did"
                         " not publish its curated captions, which verify needs to rebuild the batches")
    if sha256_file(path) != lock["captions"]["sha256"]:
        raise BuildError(f"{path}: its sha256 is not the lock's captions.sha256: the curated captions were changed")
    captions = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                captions.append(parse_caption_line(line))
            except (ValueError, KeyError, TypeError) as e:
                raise InputError("DIR_OR_REPO", f"not a curated caption ({type(e).__name__}: {e}); the build is"
                                 " damaged", location=f"{path}:{n}") from None
    return captions


def _sample_rows(build_dir: Path, n: int, seed: int) -> list[dict]:
    """A seeded sample of rows (plan order), images included; only the sampled rows are decoded."""
    files = layout.data_files(build_dir)
    try:
        ids = [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]
        chosen = sorted(random.Random(seed).sample(range(len(ids)), min(n, len(ids))))
        wanted = pa.array([ids[i] for i in chosen], pa.string())
        rows = []
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=64):
                rows += batch.filter(pc.is_in(batch.column("id"), value_set=wanted)).to_pylist()
    except (pa.ArrowException, OSError, KeyError) as e:
        raise InputError("DIR_OR_REPO", f"a data file is not a readable Parquet file with an id column"
                         f" ({type(e).__name__}: {e}); the build is damaged", location=str(build_dir)) from None
    return rows


def _locate_batches(recipe, lock: dict, lock_path: Path, captions: list, rows: list[dict]) -> tuple[dict, dict]:
    """(shard, batch) -> (the batch's items, [(position in batch, row)]), and a RowCheck per row. Batches
    are rebuilt from the stored captions exactly as the build formed them."""
    from ..execution.plan import derive_seed
    from ..execution.worker import batches, shard_items
    shard_size, default_bs = lock["build"]["shard_size"], lock["build"]["batch_size"]
    index = {c.id: i for i, c in enumerate(captions)}
    groups: dict = {}
    checks = {}
    for row in rows:
        check = checks[row["id"]] = RowCheck(row["id"])
        caption_id, _, k = row["id"].rpartition("-")
        ci = index.get(caption_id)
        if ci is None or not (k.isascii() and k.isdigit()) or int(k) >= recipe.generate.max_candidates:
            check.problems.append("id names no candidate of the curated captions")
            continue
        if row["caption"] != captions[ci].text:
            check.problems.append("caption differs from captions.jsonl")
        if row["seed"] != derive_seed(recipe.seed, caption_id, int(k)):
            check.problems.append("seed is not the recipe's")
        shard, first = divmod(ci, shard_size)
        per_shard = lock["build"].get("shard_batch_sizes")  # present when an OOM back-off changed it
        if per_shard and shard >= len(per_shard):
            raise InputError("build.shard_batch_sizes", f"lists {len(per_shard)} shard(s), but the curated captions"
                             f" make at least {shard + 1} of {shard_size}", location=str(lock_path))
        bs = per_shard[shard] if per_shard else default_bs
        start = shard * shard_size
        if recipe.generate.adaptive:  # the batch of its round, as the row records it (execution/rounds.py)
            found = _round_batch(recipe, captions[start:start + shard_size], row, first, int(k))
            if isinstance(found, str):
                check.problems.append(found)
                continue
            batch, position = found
            check.shard, check.batch = shard, int(k)
            key = (shard, int(k), tuple(it.caption.id for it in batch))
            groups.setdefault(key, (batch, []))[1].append((position, row))
            continue
        items = shard_items(recipe, captions[start:start + shard_size])
        position = first * recipe.generate.max_candidates + int(k)
        check.shard, check.batch = shard, position // bs
        batch = batches(items, bs)[check.batch]
        groups.setdefault((shard, check.batch), (batch, []))[1].append((position % bs, row))
    return groups, checks


def _round_batch(recipe, shard: list, row: dict, first: int, k: int):
    """(the items of an adaptive build's round batch, the row's position in it), rebuilt from the row's
    round_batch column; or what is wrong with that column."""
    from ..execution.plan import derive_seed
    from ..execution.worker import Item
    members = row.get("round_batch")
    if not isinstance(members, list) or not members or any(
            not isinstance(p, int) or not 0 <= p < len(shard) for p in members) or members != sorted(set(members)):
        return "round_batch does not name captions of its shard in plan order"
    if first not in members:
        return "round_batch does not hold the row's own caption"
    return [Item(shard[p], k, derive_seed(recipe.seed, shard[p].id, k)) for p in members], members.index(first)


# --- comparison -----------------------------------------------------------------------------------

def pixel_difference(stored: bytes, regenerated: np.ndarray, image_format: str, quality: int) -> tuple[float, float]:
    """(max, mean) |difference| in levels between a stored image and a regeneration: against the raw
    regeneration for lossless formats; for lossy ones between both decoded, the regeneration encoded as
    the build encodes it."""
    from ..stages.format import encode_image
    ours = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"), dtype=np.int16)
    if image_format in LOSSLESS:
        theirs = regenerated.astype(np.int16)
    else:
        encoded = encode_image(regenerated, image_format, quality)
        theirs = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"), dtype=np.int16)
    if ours.shape != theirs.shape:
        return float("inf"), float("inf")
    diff = np.abs(ours - theirs)
    return float(diff.max()), float(diff.mean())


def pixels_match(largest: float, mean: float, image_format: str, exact: bool) -> bool:
    if exact:
        return largest == 0
    return (largest if image_format in LOSSLESS else mean) <= 1


def _compare(check: RowCheck, row: dict, image: np.ndarray, scores: dict, recipe, exact: bool) -> None:
    fmt = recipe.format
    try:
        largest, mean = pixel_difference(row["image"]["bytes"], image, fmt.image_format, fmt.quality)
    except (OSError, ValueError, TypeError, KeyError) as e:  # PIL cannot decode what the row stores
        check.problems.append(f"stored image does not decode ({type(e).__name__})")
    else:
        check.pixels = f"{largest:g}" if fmt.image_format in LOSSLESS or exact else f"{mean:.3g}"
        if not pixels_match(largest, mean, fmt.image_format, exact):
            check.problems.append(f"pixels differ (max {largest:g}, mean {mean:.3g} levels)")
    for name in scores:
        check.deltas[name] = abs(float(row[name]) - scores[name])
        if not check.deltas[name] <= SCORE_TOLERANCE:
            check.problems.append(f"{name} {row[name]:.6f} != {scores[name]:.6f}")
