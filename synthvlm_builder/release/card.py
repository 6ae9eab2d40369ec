"""The dataset card: huggingface_hub's DatasetCard with metadata that matches the
files (license, tags, configs, dataset_info), plus the recipe, fingerprint,
funnel, a score histogram and a sample grid."""
from __future__ import annotations

import io
import math
from pathlib import Path

import datasets
import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image
from datasets.info import DatasetInfosDict

from ..recipe import Recipe
from ..stages.rows import SCORES, field_list
from .dataset import CITATION
from .layout import HISTOGRAM, SAMPLES

TEMPLATE = Path(__file__).with_name("card_template.md")
CLIP_UNITS = {"cosine": "the raw cosine similarity of the image and caption embeddings (the paper's units)",
              "clipscore": "CLIPScore as Hessel et al. define it, 2.5 * max(cosine, 0) (the units of the authors'"
                           " follow-up code)"}


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "10M<n<100M"


def card_data(recipe: Recipe, info: datasets.DatasetInfo, rows: int) -> DatasetCardData:
    data = DatasetCardData(
        license=recipe.license, pretty_name=recipe.name, language=["en"],
        tags=["synthetic", "image-text", "synthvlm"], task_categories=["image-to-text", "text-to-image"],
        size_categories=[size_category(rows)],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def plot_histogram(path: Path, all_scores: np.ndarray, selected: np.ndarray, bins: int = 40) -> None:
    """Score histogram of all candidates (grey) with the selected ones over it (blue), drawn
    with PIL: a plotting library would cost more start-up than the rest of the card."""
    from PIL import ImageDraw, ImageFont

    width, height, left, right, top, bottom = 640, 320, 56, 16, 36, 44
    lo, hi = (float(all_scores.min()), float(all_scores.max())) if len(all_scores) else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-3
    edges = np.linspace(lo, hi, bins + 1)
    counts_all, _ = np.histogram(all_scores, bins=edges)
    counts_sel, _ = np.histogram(selected, bins=edges)
    peak = max(1, int(counts_all.max(initial=0)))
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    plot_w, plot_h = width - left - right, height - top - bottom
    bar_w = plot_w / bins
    for counts, colour in ((counts_all, (187, 187, 187)), (counts_sel, (59, 117, 175))):
        for i, n in enumerate(counts):
            if n:
                x0 = left + i * bar_w
                draw.rectangle([x0, top + plot_h * (1 - n / peak), x0 + bar_w - 1, top + plot_h], fill=colour)
    draw.line([left, top, left, top + plot_h, left + plot_w, top + plot_h], fill="black")
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + frac * plot_w
        draw.line([x, top + plot_h, x, top + plot_h + 4], fill="black")
        draw.text((x, top + plot_h + 6), f"{lo + frac * (hi - lo):.3f}", fill="black", font=font, anchor="ma")
        y = top + plot_h * (1 - frac)
        draw.text((left - 6, y), f"{round(frac * peak)}", fill="black", font=font, anchor="rm")
    draw.text((left + plot_w / 2, height - 4), "score = CLIPScore + w * SSIM", fill="black", font=font, anchor="md")
    draw.rectangle([left + 8, 10, left + 20, 20], fill=(187, 187, 187))
    draw.text((left + 26, 15), f"all candidates ({len(all_scores):,})", fill="black", font=font, anchor="lm")
    draw.rectangle([left + 228, 10, left + 240, 20], fill=(59, 117, 175))
    draw.text((left + 246, 15), f"selected ({len(selected):,})", fill="black", font=font, anchor="lm")
    im.save(path, format="PNG")


def sample_grid(path: Path, images: list[bytes], cols: int = 4, cell: int = 160) -> None:
    rows = max(1, math.ceil(len(images) / cols))
    grid = Image.new("RGB", (cols * cell, rows * cell), "white")
    for i, data in enumerate(images):
        im = Image.open(io.BytesIO(data)).convert("RGB")
        im.thumbnail((cell, cell))
        grid.paste(im, ((i % cols) * cell + (cell - im.width) // 2, (i // cols) * cell + (cell - im.height) // 2))
    grid.save(path, format="PNG")


def funnel_table(caption_funnel: dict, selection_funnel: dict) -> str:
    lines = ["| stage | dropped | remaining |", "|---|---:|---:|"]
    read = sum(s["read"] for s in caption_funnel["sources"])
    for s in caption_funnel["sources"]:
        lines.append(f"| captions read from `{s['name']}` ({s['type']}) | | {s['read']:,} |")
    remaining = read
    for f in caption_funnel["filters"]:
        remaining -= f["dropped"]
        lines.append(f"| caption filter `{f['name']}` | {f['dropped']:,} | {remaining:,} |")
    for s in selection_funnel["steps"]:
        lines.append(f"| {s['step']} | {s.get('dropped', 0):,} | {s['kept']:,} |")
    return "\n".join(lines)


def _stats_line(name: str, values: np.ndarray) -> str:
    if not len(values):
        return f"| {name} | | | |"
    return f"| {name} | {values.mean():.4f} | {values.min():.4f} | {values.max():.4f} |"


def render(recipe: Recipe, fingerprint: str, info: datasets.DatasetInfo, rows: int, caption_funnel: dict,
           selection_funnel: dict, selected: dict) -> DatasetCard:
    """The card from card_template.md; `selected` maps each score column to the selected rows' values."""
    g, s = recipe.generate, recipe.score
    repo_id = recipe.publish.repo_id
    context = {
        "name": recipe.name, "version": recipe.version, "description": recipe.description,
        "model": g.model, "model_revision": f" (revision `{g.revision}`)" if g.revision else "",
        "clip_model": s.clip.model, "clip_units": CLIP_UNITS[s.clip.units], "ssim_weight": s.ssim.weight, "ssim_size": s.ssim.size,
        "rows": f"{rows:,}", "width": g.resolution[0], "height": g.resolution[1],
        "image_format": recipe.format.image_format.upper(), "steps": g.steps, "guidance": g.guidance_scale,
        "dtype": g.dtype, "per_caption": g.images_per_caption, "fingerprint": fingerprint,
        "load_from": repo_id or f"path/to/{recipe.name}-v{recipe.version}",
        "load_revision": f', revision="v{recipe.version}"' if repo_id else "",
        "fields": field_list(), "funnel": funnel_table(caption_funnel, selection_funnel),
        "score_lines": [_stats_line(name, selected[name]) for name in SCORES],
        "histogram": HISTOGRAM, "samples": SAMPLES, "recipe_text": recipe.text.rstrip(), "citation": CITATION,
    }
    return DatasetCard.from_template(card_data(recipe, info, rows), template_path=str(TEMPLATE), **context)
