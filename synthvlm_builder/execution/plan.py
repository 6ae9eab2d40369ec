"""Recipe -> Plan: fingerprint, seeds, shards and a compute estimate. Pure: no I/O.

The fingerprint is the sha256 of the canonical JSON of every field that changes
the data. Seeds come from sha256 too, never from Python's `hash()`, so they are
the same on every process, machine and Python version.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..recipe import Recipe, recipe_to_dict
from ..recipe.paths import portable_paths

# Bump when the meaning of a recipe's data fields changes (e.g. seed derivation).
# 2: captions are stripped of surrounding whitespace; empty ones and those holding the output format's
#    reserved tokens are dropped; source ids must be unique (duplicate_ids); image file names carry a hash;
#    CLIP and SSIM score the decoded published image bytes, not the pixels before encoding.
DATA_FORMAT = 2

# Rough encoded bytes per pixel, for the output-size estimate only.
BYTES_PER_PIXEL = {"jpeg": 0.35, "webp": 0.25, "png": 1.8}

# The reference throughput GPU-hour estimates assume (README "Reviewing a recipe PR" names its source):
# SDXL base 1.0 at 1024x1024, fp16, diffusers + SDPA + torch.compile + channels-last, one A100 80GB SXM,
# 9.74 pipeline steps/s end to end; with classifier-free guidance a step is 2 denoiser evaluations.
REFERENCE = {"gpu": "A100 80GB SXM", "model": "SDXL base 1.0", "pixels": 1024 * 1024,
             "denoiser_evals_per_second": 19.48}
REFERENCE_TEXT = (f"one {REFERENCE['gpu']} running {REFERENCE['model']} at 1024x1024 (fp16, torch.compile):"
                  f" {REFERENCE['denoiser_evals_per_second']} denoiser evaluations/s; other sizes scaled by pixel"
                  " count")


def gpu_hours(denoiser_evals: int, resolution) -> float:
    """Denoiser evaluations at the reference throughput, scaled by pixels (1024x1024 = 1)."""
    scale = resolution[0] * resolution[1] / REFERENCE["pixels"]
    return denoiser_evals * scale / REFERENCE["denoiser_evals_per_second"] / 3600


def is_data_field(dotted_path: str) -> bool:
    """Whether a recipe field (e.g. `captions.filters.llm_judge.timeout`) can change the data: the schema
    marks those that never do (x-data: false) where they are declared (core.schema.json, or a
    component's `operational` fields)."""
    from ..recipe.schema import schema
    node = schema()
    for part in re.findall(r"[^.\[\]]+", dotted_path):
        if node.get("x-data") is False:
            return False
        if part.isdigit():
            continue
        node = (node.get("properties") or {}).get(part) or (node.get("items") or {}).get("properties", {}).get(part)
        if node is None:
            return True
    return node.get("x-data") is not False


def portable_dict(recipe: Recipe) -> dict:
    """The resolved recipe with its local paths relative to the recipe file, so the same recipe
    has the same fingerprint in every checkout."""
    data = recipe_to_dict(recipe)
    portable_paths(data, recipe.base or Path.cwd())
    return data


def data_view(recipe: Recipe) -> dict:
    """Exactly the fields that change the data, as the schema marks them (recipe/schema.py): no field
    the schema says changes no data (x-data: false); a field added after its recipes were published
    (x-later), and any field of a component that came after the registry (x-new), only when set to
    something else than its default; the name and version of every plugin whose components it uses."""
    from ..recipe.components import plugins_used
    from ..recipe.schema import schema
    data = portable_dict(recipe)
    view = _view(data, schema(), new=False)
    plugins = plugins_used(data)
    if plugins:
        view["plugins"] = plugins
    view["data_format"] = DATA_FORMAT
    return view


def _view(value, node: dict, new: bool):
    if isinstance(value, dict) and "properties" in node:
        new = new or bool(node.get("x-new"))
        out = {}
        for key, item in value.items():
            sub = node["properties"].get(key)
            if sub is None:  # a plugin source's own key, or an older lock's: it counts
                out[key] = item
                continue
            if sub.get("x-data") is False:
                continue
            if (new or sub.get("x-later")) and item == sub.get("default"):
                continue
            out[key] = _view(item, sub, new or bool(sub.get("x-new")))
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_view(v, node["items"], new) for v in value]
    return value


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(recipe: Recipe) -> str:
    return hashlib.sha256(canonical_json(data_view(recipe)).encode("utf-8")).hexdigest()


def derive_seed(root_seed: int, caption_id: str, k: int) -> int:
    """A 63-bit seed for candidate k of a caption: stable everywhere, independent of order."""
    digest = hashlib.sha256(f"synthvlm/seed/v1\x00{root_seed}\x00{caption_id}\x00{k}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def sample_id(caption_id: str, k: int) -> str:
    return f"{caption_id}-{k}"


def shard_ranges(n_captions: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) caption index ranges, in plan order."""
    return [(start, min(start + shard_size, n_captions)) for start in range(0, n_captions, shard_size)]


@dataclass(frozen=True)
class Plan:
    fingerprint: str
    captions: Optional[int]      # None when a source has no limit (count unknown before reading)
    candidates: Optional[int]
    rows: Optional[int]
    shards: Optional[list]
    denoiser_evals: Optional[int]
    output_bytes: Optional[int]
    candidate_bytes: Optional[int]
    gpu_hours: Optional[float] = None  # at the REFERENCE throughput
    captions_exact: bool = False  # True when counted after curation, False for limit-based bounds
    curation: tuple = ()          # (funnel row, what it keeps), in order
    # Adaptive best-of-k: `candidates` is the bound; this the count expected from a previous build's
    # candidates per caption (None: unknown), and where that figure came from.
    expected_candidates: Optional[int] = None
    expected_from: Optional[str] = None

    def to_json(self, recipe: Recipe) -> dict:
        return {
            "name": recipe.name,
            "version": recipe.version,
            "fingerprint": self.fingerprint,
            "recipe": portable_dict(recipe),
            "counts": {"captions": self.captions, "candidates": self.candidates, "rows": self.rows,
                       "exact": self.captions_exact,
                       **({"expected_candidates": self.expected_candidates, "expected_from": self.expected_from}
                          if recipe.generate.adaptive else {})},
            "shards": {"shard_size": recipe.execution.shard_size,
                       "count": None if self.shards is None else len(self.shards),
                       "ranges": self.shards},
            "estimate": {"denoiser_evals": self.denoiser_evals, "output_bytes": self.output_bytes,
                         "candidate_bytes": self.candidate_bytes,
                         "gpu_hours": self.gpu_hours, "reference": REFERENCE},
            "curation": [{"row": name, "keeps": rule} for name, rule in self.curation],
            "components": _components(recipe),
        }


def _components(recipe: Recipe) -> list[dict]:
    """Every component the recipe uses, with where it comes from (a plugin: its package and version)."""
    from ..recipe.components import recipe_components
    return [{"kind": cls.kind, "name": cls.name, "from": cls.origin.distribution or "synthvlm-builder",
             **({"version": cls.origin.version} if cls.origin.distribution else {})}
            for cls in recipe_components(recipe)]


def curation_rows(recipe: Recipe) -> tuple[tuple[str, str], ...]:
    """The caption stage's funnel rows, in order, with what each keeps."""
    from ..curation.captions import funnel_rows
    from ..stages.format import RESERVED_TOKENS
    return tuple(funnel_rows(recipe.captions.filters, RESERVED_TOKENS[recipe.format.style],
                             any(s.duplicate_ids == "drop" for s in recipe.captions.sources)))


def make_plan(recipe: Recipe, n_captions: Optional[int] = None, per_caption: Optional[tuple[float, str]] = None
              ) -> Plan:
    """Counts use `n_captions` when the caller knows it (after curation), else the
    sources' limits as an upper bound, else stay unknown. `per_caption`: (mean candidates per caption
    an adaptive recipe's earlier build made, where it was read) for the expected count."""
    exact = n_captions is not None
    if n_captions is None and all(s.limit for s in recipe.captions.sources):
        n_captions = sum(s.limit for s in recipe.captions.sources)
    g, fmt = recipe.generate, recipe.format
    if n_captions is None:
        return Plan(fingerprint(recipe), None, None, None, None, None, None, None, None,
                    curation=curation_rows(recipe))
    candidates = n_captions * g.max_candidates  # adaptive best-of-k: the bound
    pool = n_captions if recipe.select.per_caption == "best" else candidates
    rows = min(recipe.select.size, pool)
    cfg = 2 if g.guidance_scale > 1 else 1
    image_bytes = int(g.resolution[0] * g.resolution[1] * BYTES_PER_PIXEL[fmt.image_format])
    evals = candidates * g.steps * cfg
    return Plan(
        fingerprint=fingerprint(recipe),
        captions=n_captions,
        candidates=candidates,
        rows=rows,
        shards=[list(r) for r in shard_ranges(n_captions, recipe.execution.shard_size)],
        denoiser_evals=evals,
        output_bytes=rows * image_bytes,
        candidate_bytes=candidates * image_bytes,
        gpu_hours=gpu_hours(evals, g.resolution),
        captions_exact=exact,
        curation=curation_rows(recipe),
        expected_candidates=round(n_captions * per_caption[0]) if per_caption and g.adaptive else None,
        expected_from=per_caption[1] if per_caption and g.adaptive else None,
    )
