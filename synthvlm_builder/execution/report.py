"""What reviewers read: the plan as text, and the diff of two recipes."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..hub import is_hf_url
from ..recipe import Recipe, recipe_to_dict
from ..text import printable
from .plan import REFERENCE_TEXT, Plan, fingerprint, is_data_field, portable_dict

UNSET = "<unset>"
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def semver_key(version: str) -> tuple:
    """Sort key with semver precedence: a pre-release sorts before its release;
    numeric identifiers compare as numbers and before alphanumeric ones."""
    major, minor, patch, pre = SEMVER.match(version).groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0, ids)


def human_bytes(n) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def num(n) -> str:
    return "unknown" if n is None else f"{n:,}"


def hours(h) -> str:
    """GPU-hours: one decimal from 1 h up, two significant digits below, a floor for the tiniest."""
    if h is None:
        return "unknown"
    if h == 0 or h >= 1:
        return f"{h:,.1f}"
    return "< 0.0001" if h < 1e-4 else f"{h:.2g}"


def _expected(plan: Plan) -> str:
    """Adaptive best-of-k: the count is a bound; the expected one comes from `plan --measure` or an earlier
    build."""
    if plan.expected_candidates is None:
        return " at most (adaptive best-of-k; plan --measure or a build of it gives the expected count)"
    return f" at most; expected ~{plan.expected_candidates:,} ({plan.expected_from})"


def format_plan(recipe: Recipe, plan: Plan) -> str:
    g = recipe.generate
    count_note = ("" if plan.captions is None else " (exact)" if plan.captions_exact
                  else " (upper bound: source limits)")
    lines = [
        f"recipe       {recipe.name} v{recipe.version}",
        f"fingerprint  {plan.fingerprint}",
        f"model        {g.model}" + (f" @ {g.revision}" if g.revision else ""),
        f"generation   {g.resolution[0]}x{g.resolution[1]}, {g.steps} steps, guidance {g.guidance_scale}, "
        f"{g.dtype}, batch {g.batch_size}, {g.per_caption_text}",
        f"scoring      CLIP {recipe.score.clip.model}" + (f" ({recipe.score.clip.pretrained})"
                                                          if recipe.score.clip.pretrained else "")
        + f" + {recipe.score.ssim.weight} * SSIM@{recipe.score.ssim.size};"
        f" clip_score in {recipe.score.clip.units} units",
        f"captions     {num(plan.captions)}{count_note}",
        f"candidates   {num(plan.candidates)}" + (_expected(plan) if g.adaptive else ""),
        f"rows         {num(plan.rows)} (select.size {recipe.select.size:,}, per_caption {recipe.select.per_caption})",
        f"shards       {num(None if plan.shards is None else len(plan.shards))} of {recipe.execution.shard_size:,}"
        " captions",
        f"denoiser     {num(plan.denoiser_evals)} evaluations"
        + (" (2 per step: classifier-free guidance)" if g.guidance_scale > 1 else ""),
        f"gpu-hours    {hours(plan.gpu_hours)} (reference: {REFERENCE_TEXT})",
        f"output       ~{human_bytes(plan.output_bytes)} dataset, ~{human_bytes(plan.candidate_bytes)} candidates",
    ]
    from ..recipe.components import plugins_used, recipe_components
    from ..stages.rows import scores
    thresholds = [f"{k} {v}" for k, v in recipe.select.items() if k[:4] in ("min_", "max_") and v is not None]
    lines.append(f"columns      {', '.join(scores(recipe))} (scores), selected by "
                 + (", ".join(thresholds) or "score alone"))
    plugins = plugins_used(recipe_to_dict(recipe))
    for dist, version in plugins.items():
        used = [f"{cls.kind.replace('_', ' ')} {cls.name}" for cls in recipe_components(recipe)
                if cls.origin.distribution == dist]
        lines.append(f"plugin       {dist} {version}: {', '.join(used)}")
    lines.append("curation     in this order, each a row of the funnel (`synthvlm-build captions` runs it):")
    lines += [f"  {name:<22} keeps {rule}" for name, rule in plan.curation]
    if plan.captions is None:
        lines.append("note         set captions.sources[].limit (or run `synthvlm-build captions`) for counts")
    for field, digest in local_source_digests(recipe).items():
        pins = " (a commit pins every file of the repository)" if digest.startswith("commit:") else ""
        lines.append(f"content      {field}: {digest}{pins}")
    return "\n".join(printable(line) for line in lines)  # model ids and paths are the recipe's text


def local_source_digests(recipe: Recipe) -> dict[str, str]:
    """The content digest of each input `plan` can name without fetching or building anything, by the
    build's content identity's keys and definitions (identity.py, models/digests.py; the lock holds the
    same): local caption files, and model weights: a local or shipped model by the sha256 over every
    file's path and sha256, a local file by its sha256, a Hub model pinned at a commit by that commit,
    an open_clip release by its tag. A random-weight builtin (built on first use) and an unpinned Hub
    model are left out: the build names them."""
    from ..recipe.paths import file_type
    from .identity import source_digest
    out = {f"captions.sources[{i}]": source_digest(recipe, i) for i, s in enumerate(recipe.captions.sources)
           if file_type(s.type) and not is_hf_url(s.path)}
    return {**out, **model_digests(recipe)}


def model_digests(recipe: Recipe) -> dict[str, str]:
    """The digests of the models the lock names (models/uses.py), those that can be had from disk."""
    from ..models.uses import digest
    from ..recipe import recipe_to_dict
    from ..recipe.components import model_uses
    return {use.digest: digest(use) for use in model_uses(recipe_to_dict(recipe))
            if use.lock is not None and use.digest is not None
            and _nameable(use.model, use.pretrained if use.kind == "clip" else use.revision, use.kind == "clip")}


def _nameable(model: str, pin: str | None, clip: bool) -> bool:
    """Whether a model's digest can be had from what is on disk, with nothing built or fetched."""
    from ..models.builtin import SHIPPED
    from ..models.digests import COMMIT
    from ..models.ref import BUILTIN, HUB, LOCAL, ModelRef, pretrained_is_file
    ref = ModelRef.parse(model, clip=clip)
    if ref.kind == BUILTIN:
        return ref.name in SHIPPED
    if ref.kind == LOCAL:
        return ref.path().exists()
    if ref.kind == HUB:  # `pin`: a pipeline's revision (an hf-hub: CLIP has none)
        return not clip and bool(pin and COMMIT.match(pin))
    return not (pin and pretrained_is_file(pin)) or Path(pin).is_file()  # an open_clip tag or checkpoint


def unpinned_sources(old: Recipe | None, new: Recipe) -> list[str]:
    """Notes for local caption files that no sha256 pins: their content can change the data without
    changing the recipe, so a diff of recipes cannot see it. Against `old`, those whose path did not
    change (a changed path shows as a changed field); for a new recipe (`old` None), every one."""
    from ..recipe.paths import file_type
    old_paths = {s.path for s in old.captions.sources} if old is not None else None
    seen = "this diff cannot" if old is not None else "a review of the recipe cannot"
    notes = []
    for i, src in enumerate(new.captions.sources):
        if (file_type(src.type) and not is_hf_url(src.path) and not src.sha256
                and (old_paths is None or src.path in old_paths)):
            notes.append(f"note: captions.sources[{i}] is a local file with no sha256 pin: its content can change"
                         " the data without changing the recipe or its fingerprint (the build notices, by content"
                         f" identity; {seen}); pin it with captions.sources[{i}].sha256")
    return notes


def _flatten(value, prefix="") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        out[f"{prefix}.<length>"] = len(value)
        return out
    return {prefix: value}


@dataclass(frozen=True)
class Change:
    field: str
    old: object      # "<unset>" when the field is absent on that side
    new: object
    data: bool       # does the field change the data (plan.is_data_field)


VERDICTS = {0: "same data", 3: "data changes; version bumped", 4: "data changes but version NOT bumped"}


def diff_exit_code(data_changed: bool, bumped: bool) -> int:
    """`diff`'s exit code, which `review` and `compare` share: 0 same data, 3 data changed and version bumped,
    4 data changed and version NOT bumped."""
    return 0 if not data_changed else 3 if bumped else 4


@dataclass(frozen=True)
class Comparison:
    """Two recipes compared: what `diff` prints and `review` renders, with one verdict."""
    changes: list
    old_fingerprint: str
    new_fingerprint: str
    old_version: str
    new_version: str
    notes: list       # unpinned local sources

    @property
    def data_changed(self) -> bool:
        return self.old_fingerprint != self.new_fingerprint

    @property
    def bumped(self) -> bool:
        return semver_key(self.new_version) > semver_key(self.old_version)

    @property
    def exit_code(self) -> int:
        return diff_exit_code(self.data_changed, self.bumped)

    @property
    def verdict(self) -> str:
        return VERDICTS[self.exit_code]


def compare_recipes(old: Recipe, new: Recipe) -> Comparison:
    a, b = _flatten(portable_dict(old)), _flatten(portable_dict(new))
    changes = [Change(key, a.get(key, UNSET), b.get(key, UNSET), is_data_field(key))
               for key in sorted(set(a) | set(b)) if a.get(key, UNSET) != b.get(key, UNSET)]
    return Comparison(changes, fingerprint(old), fingerprint(new), old.version, new.version,
                      unpinned_sources(old, new))


def diff_recipes(old: Recipe, new: Recipe) -> tuple[str, int]:
    """Text for reviewers and the exit code: 0 same data, 3 changed+bumped, 4 changed, not bumped."""
    c = compare_recipes(old, new)
    # A field path holds the recipe's keys and json.dumps escapes what the values hold: one line each.
    lines = [f"  {printable(x.field)}: {json.dumps(None if x.old == UNSET else x.old)} -> "
             f"{json.dumps(None if x.new == UNSET else x.new)}  [{'data' if x.data else 'no data change'}]"
             for x in c.changes]
    out = [f"{len(lines)} field(s) changed" + (":" if lines else "")] + lines + c.notes
    fa, fb = c.old_fingerprint, c.new_fingerprint
    if not c.data_changed:
        out.append(f"fingerprint unchanged ({fa[:12]}): same data")
    else:
        out.append(f"fingerprint {fa[:12]} -> {fb[:12]}: the data changes")
        out.append(f"version {c.old_version} -> {c.new_version}: bumped" if c.bumped else
                   f"version {c.old_version} -> {c.new_version}: NOT bumped; the data changed, so bump `version`"
                   " (a published tag must never point at other data)")
    return "\n".join(out), c.exit_code
