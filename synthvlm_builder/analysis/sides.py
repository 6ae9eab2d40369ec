"""One side of a comparison: the rows a build, a Hub release or a recipe gives, with its funnel.

    DIR                      a finished build (layout.py): its data files, recipe.lock.json, stats.json
    ORG/NAME@vX.Y.Z          a Hub release: those files downloaded at the tag (ORG/NAME alone: main)
    RECIPE.yaml, REV:PATH    a recipe: its first N curated captions through the real pipeline, exactly as
                             `preview` runs them (execution/preview.py), rows = the candidates that pass
                             the thresholds and the per-caption rule (the global top-N cut needs the whole build)

Score columns come from the recipe (stages/rows.py `scores`: the core's and every score and screen component's)
and, for builds and releases, the data files: the lock's recipe's score columns that the files hold, or, when
that recipe cannot be read here (a plugin not installed), the files' floating-point columns that are not the
core's. A new score shows up here by itself.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from .. import layout
from ..errors import BuildError, InputError
from ..stages import rows as row_schema

CORE = tuple(c.name for c in row_schema.HEAD + row_schema.TAIL)
RELEASE = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<rev>[^\s@]+))?$")
RECIPE_SUFFIXES = (".yaml", ".yml")
SHAPES_GENERATOR = "builtin:shapes-sd"  # its data are shapes-world scenes (models/shapes/world.py)


@dataclass(frozen=True)
class Row:
    id: str
    caption_id: str
    caption: str
    image: bytes
    digest: str          # sha256 of the image bytes as published
    scores: dict         # score column -> float


@dataclass
class Side:
    spec: str            # as given on the command line
    kind: str            # build | release | recipe
    name: str
    version: str
    fingerprint: str
    identity: str        # the fingerprint joined with the input files' digests (execution/identity.py)
    generator: str       # generate.model
    rows: list
    scores: tuple        # the score columns this side's data has, in row-schema order
    caption_funnel: dict  # curation/captions.py Funnel.to_dict()
    selection_funnel: dict  # stages/select.py Selection.funnel
    notes: list = field(default_factory=list)
    docs: dict = field(default_factory=dict)  # score column -> what it is (its Column.doc), when known

    @property
    def shapes_world(self) -> bool:
        return self.generator == SHAPES_GENERATOR


def caption_id(row_id: str) -> str:
    """A row id is `<caption id>-<k>` (execution/plan.py sample_id)."""
    return row_id.rpartition("-")[0] or row_id


def check_side(spec: str, what: str, offline: bool = False):
    """What a side is, checked cheaply (nothing generated or downloaded), so that a bad second side is
    reported before the first one runs: a build dir (its Path), a recipe (its Recipe) or a release (its
    ORG/NAME and revision). `what` names the argument in errors (OLD, NEW)."""
    path = Path(spec)
    if path.is_dir():
        if not layout.is_finished(path):
            raise InputError(what, f"{spec} is not a finished synthvlm build (expected {layout.CARD},"
                                   f" {layout.LOCK} and {layout.DATA}/train-*.parquet)")
        return path
    if path.is_file() or path.suffix in RECIPE_SUFFIXES or ":" in spec:
        from ..recipe import load_recipe_any
        recipe = load_recipe_any(spec)
        needs = network_fields(recipe) if offline else []
        if needs:
            raise InputError(what, f"{spec}: not compared offline: {'; '.join(needs)} would come over the network"
                                   " (only built-in models and files on this disk are used with --offline)")
        return recipe
    m = RELEASE.match(spec)
    if not m:
        raise InputError(what, f"{spec}: not a build dir, a recipe file or REV:PATH, nor a Hub release"
                               " ORG/NAME@vX.Y.Z")
    return m["repo"], m["rev"]


def load_side(spec: str, what: str, checked, n_captions: int = 16, device: str | None = None) -> Side:
    """The side `check_side` found (`checked`)."""
    if isinstance(checked, Path):
        return from_build(checked, spec, "build", what)
    if isinstance(checked, tuple):
        folder = fetch_release(*checked, what, [layout.LOCK, layout.STATS, f"{layout.DATA}/*"])
        return from_build(folder, spec, "release", what)
    return from_recipe(checked, spec, n_captions, device)


def fetch_release(repo: str, revision: str | None, what: str, patterns: list[str]) -> Path:
    """The files of a Hub release matching `patterns`, downloaded (as release/verify.py does)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    label = f"{repo}@{revision or 'main'}"
    try:
        folder = Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=patterns))
    except RevisionNotFoundError:
        raise InputError(what, f"{repo} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise InputError(what, f"no dataset {repo} on the Hub (or no access with this token)") from None
    except Exception as e:  # network, offline mode, server errors: not the user's input
        raise BuildError(f"cannot download {label}: {type(e).__name__}: {e}") from None
    return folder


def from_build(folder: Path, spec: str, kind: str, what: str) -> Side:
    if not layout.is_finished(folder) and not (kind == "release" and layout.data_files(folder)):
        raise InputError(what, f"{spec} is not a finished synthvlm build (expected {layout.CARD}, {layout.LOCK}"
                               f" and {layout.DATA}/train-*.parquet)")
    lock, stats = _json(folder / layout.LOCK, spec, what), _json(folder / layout.STATS, spec, what)
    try:
        recipe = lock["recipe"]
        name, version, fp = str(recipe["name"]), str(recipe["version"]), str(lock["fingerprint"])
        generator = str(recipe["generate"]["model"])
        funnels = _funnel(stats["captions"], "sources", "read", "filters"), _funnel(stats["selection"], "steps", "kept")
    except (KeyError, TypeError) as e:
        raise InputError(what, f"{spec}: {layout.LOCK} or {layout.STATS} is not a synthvlm build's"
                               f" ({type(e).__name__}: {e})") from None
    files = layout.data_files(folder)
    scores, docs = score_columns(lock["recipe"], _schema(files[0], spec, what))
    return Side(spec, kind, name, version, fp, str(lock.get("identity") or fp), generator,
                read_rows(files, scores, spec, what), scores, *funnels, docs=docs)


def score_columns(recipe: dict, schema) -> tuple[tuple, dict]:
    """(score columns, their docs) of data files with the Arrow `schema`, made by the (lock's) `recipe`."""
    import pyarrow as pa
    from ..recipe import recipe_from_dict
    try:
        columns = [c for c in row_schema.columns(recipe_from_dict(recipe, Path.cwd())) if c.score]
    except Exception:  # noqa: BLE001  a recipe this installation cannot read: the data say what they hold
        return tuple(f.name for f in schema if f.name not in CORE and pa.types.is_floating(f.type)), {}
    return tuple(c.name for c in columns if c.name in schema.names), {c.name: c.doc for c in columns}


def _funnel(funnel, rows: str, count: str, more: str | None = None) -> dict:
    """A funnel of stats.json, checked: lists of objects with their counts integers (TypeError otherwise)."""
    def checked(items, number: str, name: str) -> None:
        if not isinstance(items, list) or not all(
                isinstance(x, dict) and isinstance(x.get(name), str) and isinstance(x.get(number), int)
                and isinstance(x.get("dropped", 0), int) for x in items):
            raise TypeError(f"its {name} rows are not objects with an integer {number}")
    if not isinstance(funnel, dict):
        raise TypeError("a funnel is not an object")
    checked(funnel.get(rows), count, "name" if rows == "sources" else "step")
    if more is not None:
        checked(funnel.get(more), "dropped", "name")
    return funnel


def _json(path: Path, spec: str, what: str) -> dict:
    import json
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(what, f"{spec}: cannot read {path.name} ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(what, f"{spec}: {path.name} is not a JSON object")
    return data


def _schema(file: Path, spec: str, what: str):
    try:
        schema = pq.read_schema(file)
    except Exception as e:  # a broken or foreign file: name it, as bad input
        raise InputError(what, f"{spec}: cannot read {file.name} as a synthvlm data file ({type(e).__name__}: {e})"
                         ) from None
    return schema


def read_rows(files: list[Path], scores: tuple, spec: str, what: str) -> list[Row]:
    """The rows of data files (id, caption, image, the `scores` columns), in file order."""
    rows: list[Row] = []
    for f in files:
        try:
            table = pq.read_table(f, columns=["id", "caption", "image", *scores])
        except Exception as e:  # a broken or foreign file: name it, as bad input
            raise InputError(what, f"{spec}: cannot read {f.name} as a synthvlm data file"
                                   f" ({type(e).__name__}: {e})") from None
        cols = {name: table.column(name).to_pylist() for name in table.column_names}
        for i, rid in enumerate(cols["id"]):
            image = cols["image"][i]
            data = image.get("bytes") if isinstance(image, dict) else image
            if not isinstance(rid, str) or not isinstance(data, bytes):
                raise InputError(what, f"{spec}: {f.name} row {i} has no id or no image bytes")
            rows.append(Row(rid, caption_id(rid), str(cols["caption"][i] or ""), data,
                            hashlib.sha256(data).hexdigest(), {n: _float(cols[n][i]) for n in scores}))
    return rows


def _float(value) -> float:
    return float("nan") if value is None else float(value)


# --- a recipe, previewed -----------------------------------------------------------------------------

def from_recipe(recipe, spec: str, n_captions: int, device: str | None) -> Side:
    from ..curation.captions import Funnel
    from ..execution.identity import content_identity, input_digests
    from ..execution.plan import fingerprint
    from ..execution.curate import first_captions
    from ..execution.preview import run_candidates
    from ..execution.preflight import check_device, preflight

    device = device or recipe.execution.device
    try:
        check_device(device, "--device")
        preflight(recipe)
        fp = fingerprint(recipe)
        identity = content_identity(fp, input_digests(recipe))
        funnel = Funnel()
        captions = first_captions(recipe, n_captions, funnel)
        candidates, selection = run_candidates(recipe, captions, device)
    except InputError as e:  # name the side: two recipes are in play
        raise InputError(e.field, e.message, location=e.location or spec) from None
    rows = [Row(c["id"], c["caption_id"], c["caption"], c["image"], hashlib.sha256(c["image"]).hexdigest(),
                dict(c["scores"])) for c in candidates if c["kept"]]
    steps = selection.funnel["steps"][:-1]  # the global top-N cut needs the whole build: not previewed
    note = f"{spec}: a recipe, its first {len(captions)} curated captions previewed"
    columns = [c for c in row_schema.columns(recipe) if c.score]
    return Side(spec, "recipe", recipe.name, recipe.version, fp, identity, recipe.generate.model, rows,
                tuple(c.name for c in columns), funnel.to_dict(), {"steps": steps}, [note],
                {c.name: c.doc for c in columns})


def network_fields(recipe) -> list[str]:
    """The recipe fields whose models, caption data or endpoint would be fetched over the network: every
    `model`/`tokenizer` that is not built in or a path on this disk, Hub caption sources, LLM endpoints."""
    from ..models.ref import BUILTIN, HUB, LOCAL, ModelRef
    from ..recipe import recipe_to_dict
    from ..text import printable
    out: list[str] = []

    def on_disk(text: str) -> bool:
        ref = ModelRef.parse(text, base=recipe.base)
        return ref.kind == BUILTIN or (ref.kind == LOCAL and ref.path(recipe.base).exists())

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, str):
            key = path.rsplit(".", 1)[-1]
            if (key in ("model", "tokenizer") and not on_disk(node)) or key == "base_url":
                out.append(f"{path} {printable(node)}")

    walk(recipe_to_dict(recipe), "")
    for i, src in enumerate(recipe.captions.sources):
        if src.path.startswith("hf://") or (src.type == "hf_dataset" and ModelRef.parse(src.path).kind == HUB):
            out.append(f"captions.sources[{i}].path {printable(src.path)}")
    return out
