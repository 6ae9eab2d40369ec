"""The dataset card: huggingface_hub's DatasetCard with the metadata the Hub documents (license,
annotations_creators, source_datasets, task_categories, size_categories, tags, configs, dataset_info),
the models and revisions used, the generator's license, the recipe, fingerprint, funnel, and the
pictures drawn by cardplots.py."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData
from datasets.info import DatasetInfosDict

from ..hub import is_hf_url, parse_hf_url
from ..models.builtin import SHIPPED
from ..models.digests import COMMIT
from ..models.ref import BUILTIN, HUB, ModelRef
from ..recipe import Recipe
from ..stages.rows import field_list, scores
from ..text import md_code, md_fence, md_text
from .dataset import CITATION
from ..layout import HISTOGRAM, SAMPLES

TEMPLATE = Path(__file__).with_name("card_template.md")
CLIP_UNITS = {"cosine": "the raw cosine similarity of the image and caption embeddings (the paper's units)",
              "clipscore": "CLIPScore as Hessel et al. define it, 2.5 * max(cosine, 0) (the units of the authors'"
                           " follow-up code)"}


def span(value) -> str:
    """A recipe value as inline code in the card's prose (text.md_code: nothing in it can close the span).
    A value that is empty, or starts or ends with a space or a backtick, is shown as a quoted JSON string:
    a code span would need padding there, which renderers treat differently (CommonMark strips one space
    each side, others show the padding or the backticks themselves), and the space is part of the value."""
    text = str(value)
    if not text or text != text.strip(" ") or text.startswith("`") or text.endswith("`"):
        text = json.dumps(text, ensure_ascii=False)
    return md_code(text, table=False)


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "10M<n<100M"


# Licenses of generators people use for this, by Hub id prefix: (license, note on what it restricts).
# The Hub's licence ids where it has one. A model not listed is named with a pointer to its model card.
GENERATOR_LICENSES = (
    ("stabilityai/stable-diffusion-xl-", "openrail++",
     "CreativeML Open RAIL++-M: the images may be used commercially, but every use must respect the use"
     " restrictions of its Attachment A (no unlawful, harmful, deceptive or discriminatory use), and anyone"
     " you share the images with is bound by them too"),
    ("stabilityai/stable-diffusion-3", "other",
     "Stability AI Community License: free for research, non-commercial use and organisations with under"
     " USD 1M annual revenue; above that an Enterprise licence from Stability AI is required; Stability's"
     " Acceptable Use Policy applies"),
    ("black-forest-labs/FLUX.1-dev", "other",
     "FLUX.1 [dev] Non-Commercial License: outputs may be used, but the model may not be used for commercial"
     " purposes or to train a competing model"),
    ("black-forest-labs/FLUX.1-schnell", "apache-2.0", ""),
    ("runwayml/stable-diffusion-v1-5", "creativeml-openrail-m",
     "CreativeML Open RAIL-M: use restrictions (Attachment A) apply to every use of the images"),
    ("stable-diffusion-v1-5/", "creativeml-openrail-m",
     "CreativeML Open RAIL-M: use restrictions (Attachment A) apply to every use of the images"),
    ("CompVis/stable-diffusion-v1-", "creativeml-openrail-m",
     "CreativeML Open RAIL-M: use restrictions (Attachment A) apply to every use of the images"),
)


def generator_license(model: str) -> tuple[str, str]:
    """(license, note) of the generation model; the note says what it restricts, if anything."""
    ref = ModelRef.parse(model)
    if ref.kind == "builtin":
        return "apache-2.0", ""  # random weights this package makes (models/builtin.py)
    for prefix, license_id, note in GENERATOR_LICENSES:
        if ref.kind == HUB and ref.name.startswith(prefix):
            return license_id, note
    where = f"https://huggingface.co/{ref.name}" if ref.kind == HUB else "its model card"
    return "unknown", (f"not known to synthvlm-builder: check the licence of {span(model)} at {md_text(where)}"
                       " before use")


def source_datasets(recipe: Recipe) -> list[str]:
    """The Hub convention: `extended|<dataset>` for captions taken from a Hub dataset, `original` for
    captions from local files (this dataset is their first publication as far as the card can tell)."""
    out = []
    for src in recipe.captions.sources:
        hub_id = None
        if src.type == "hf_dataset" and ModelRef.parse(src.path).kind == HUB:
            hub_id = src.path
        elif is_hf_url(src.path):  # validated: a file of a dataset repository (recipe/checks.py)
            url = parse_hf_url(src.path)
            hub_id = url.repo_id if url.repo_type == "dataset" else None
        name = f"extended|{hub_id}" if hub_id else "original"
        if name not in out:
            out.append(name)
    return out


def card_data(recipe: Recipe, info: datasets.DatasetInfo, rows: int) -> DatasetCardData:
    data = DatasetCardData(
        license=recipe.license, pretty_name=recipe.name, language=["en"],
        annotations_creators=["machine-generated"], language_creators=["found"],
        source_datasets=source_datasets(recipe),
        tags=["synthetic", "image-text", "synthvlm"], task_categories=["image-to-text", "text-to-image"],
        size_categories=[size_category(rows)],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def funnel_table(caption_funnel: dict, selection_funnel: dict, per_caption: int | str = 1) -> str:
    """The caption funnel, then the selection's: a step that adds rows (the candidates, `per_caption` per
    caption) says so and shows no drop."""
    lines = ["| stage | dropped | remaining |", "|---|---:|---:|"]
    read = sum(s["read"] for s in caption_funnel["sources"])
    for s in caption_funnel["sources"]:
        lines.append(f"| captions read from {md_code(s['name'])} ({md_text(s['type'])}) | | {s['read']:,} |")
    remaining = read
    for f in caption_funnel["filters"]:
        remaining -= f["dropped"]
        lines.append(f"| caption filter {md_code(f['name'])} | {f['dropped']:,} | {remaining:,} |")
    for s in selection_funnel["steps"]:
        if "dropped" not in s:  # the candidates: generated, per_caption for each surviving caption
            each = per_caption if isinstance(per_caption, str) else f"{per_caption:,}"
            lines.append(f"| {s['step']} generated ({each} per caption) | | {s['kept']:,} |")
        else:
            lines.append(f"| {s['step']} | {s['dropped']:,} | {s['kept']:,} |")
    return "\n".join(lines)


def _stats_line(name: str, values: np.ndarray) -> str:
    if not len(values):
        return f"| {name} | | | |"
    return f"| {name} | {values.mean():.4f} | {values.min():.4f} | {values.max():.4f} |"


def model_lines(recipe: Recipe, lock: dict) -> list[str]:
    """The models, each with the weights the build used (the lock's `weights`: see release/lock.py),
    then how long a caption every text encoder reads whole."""
    models, g = lock["models"], recipe.generate
    gen, clip = models.get("generate"), models["clip"]
    variant = f", variant {span(g.variant)}" if g.variant else ""
    pretrained = f" with pretrained {span(clip['pretrained'])}" if clip.get("pretrained") else ""
    # a backend that loads no model (stages/generators/shapes_world.py) has no weights to name
    lines = [f"- **Generator:** {span(gen['model'])}{weights(gen['model'], gen)}{variant}, {g.dtype}" if gen else
             f"- **Generator:** the {span(g.backend)} backend (no model weights), standing in for {span(g.model)}",
             f"- **Scorer:** open_clip {span(clip['model'])}{pretrained}{weights(clip['model'], clip, True)}, "
             + (f"text prefix {span(clip['prefix'])}" if clip.get("prefix") else "no text prefix")]
    a = models.get("aesthetic")
    if a:
        lines.append(f"- **Aesthetic head:** {span(a['model'])}{weights(a['model'], a)} on open_clip"
                     f" {span(a['clip']['model'])}{weights(a['clip']['model'], a['clip'], True)}")
    titles = {"nsfw": "NSFW screen", "watermark": "Watermark screen"}
    for name, entry in models.items():  # every other model a component names (models/uses.py)
        if name in ("generate", "clip", "aesthetic") or not isinstance(entry, dict) or "model" not in entry:
            continue
        title = titles.get(name, name.replace("_", " ").capitalize())
        lines.append(f"- **{md_text(title)}:** {span(entry['model'])}{weights(entry['model'], entry)}")
    for dist, version in (lock.get("plugins") or {}).items():
        lines.append(f"- **Plugin:** {span(dist)} {span(version)}")
    return lines + [caption_length_line(recipe)]


def weights(model: str, entry: dict, clip: bool = False) -> str:
    """How the card names a model's weights: the digest the lock records (a build before the lock
    named every model's `weights` wrote other keys: those are shown as they are)."""
    digest = entry.get("weights")
    if not digest:
        pinned = entry.get("resolved_commit") or entry.get("revision")
        legacy = entry.get("weights_sha256") or entry.get("model_index_sha256")
        return f", revision {span(pinned)}" if pinned else f", sha256 {span(legacy)}" if legacy else ""
    if digest.startswith("tag:"):
        return ""  # an open_clip release: its `pretrained` tag names fixed weights
    if digest.startswith("commit:"):
        commit = digest[len("commit:"):]
        return (f", commit {span(commit)} (a commit pins every file of the repository)" if COMMIT.match(commit)
                else f", revision {span(commit)}, not pinned to a commit (the Hub's at build time)")
    ref = ModelRef.parse(model, clip=clip)
    where = ("weights shipped with synthvlm-builder" if ref.name in SHIPPED else "random weights built by"
             " synthvlm-builder") if ref.kind == BUILTIN else "weights"
    return f", {where} {span(digest)}"


def caption_length_line(recipe: Recipe) -> str:
    """Whether every text encoder read each caption whole (execution/preflight.py refuses a max_tokens
    above a context; without one, longer captions were cut to fit when generating and scoring)."""
    from ..execution.preflight import recipe_contexts
    contexts, limit = recipe_contexts(recipe), recipe.captions.filters.max_tokens
    worst = contexts.tightest()
    encoder = f"{span(worst.model)}'s {worst.part}" if worst else ""
    unchecked = f" (not checked against {md_text(', '.join(contexts.unchecked))})" if contexts.unchecked else ""
    if limit is not None:
        cut = contexts.prefix_cut(limit)
        if cut is not None:
            return (f"- **Caption length:** at most {limit} tokens (`captions.filters.max_tokens`), within every"
                    f" context{unchecked}; {span(cut.model)}'s {cut.prefix}-token text prefix leaves room for"
                    f" {cut.room}, so a longer caption was scored on its first {cut.room} tokens (as the SynthVLM"
                    " authors' code scores it) and its image generated from the whole caption")
        within = f", within the {worst.tokens}-token context of {encoder}" if worst else ""
        whole = ": every text encoder read each caption whole" if not unchecked else ""
        return f"- **Caption length:** at most {limit} tokens (`captions.filters.max_tokens`){within}{unchecked}{whole}"
    if worst is None:
        return f"- **Caption length:** not limited (`captions.filters.max_tokens` unset){unchecked}"
    prefix = f" less its {worst.prefix}-token prefix" if worst.prefix else ""
    return (f"- **Caption length:** not limited (`captions.filters.max_tokens` unset): a caption of more than"
            f" {worst.room} tokens (the {worst.tokens}-token context of {encoder}{prefix}) was cut to fit when its"
            " image was generated and scored; the `caption` column holds it whole")


def rebuild_context(recipe: Recipe) -> dict:
    """The command that rebuilds the release from its own files (execution/rebuild.py): from the Hub when the
    recipe names its repository, else from the folder the card is in."""
    repo_id = recipe.publish.repo_id
    if repo_id:
        return {"rebuild_command": span(f"synthvlm-build rebuild {repo_id} --revision v{recipe.version}"),
                "rebuild_where": f" (or {span('synthvlm-build rebuild DIR')}, DIR being this folder, local or"
                                 " downloaded)"}
    return {"rebuild_command": span("synthvlm-build rebuild DIR"), "rebuild_where": ", DIR being this folder"}


def render(recipe: Recipe, fingerprint: str, info: datasets.DatasetInfo, rows: int, caption_funnel: dict,
           selection_funnel: dict, selected: dict, lock: dict, cost: str = "") -> DatasetCard:
    """The card from card_template.md; `selected` maps each score column to the selected rows' values;
    `lock` is recipe.lock.json's content (the models as resolved). Every recipe-derived string goes
    into the Markdown escaped (text.py): a recipe's description is its author's text, and the card is
    the dataset's front page; its metadata header is YAML written by huggingface_hub."""
    g, s = recipe.generate, recipe.score
    repo_id = recipe.publish.repo_id
    gen_license, gen_note = generator_license(g.model)
    context = {
        "model_lines": model_lines(recipe, lock), "generator_license": gen_license,
        "generator_note": gen_note, "dataset_license": span(recipe.license),
        "name": md_text(recipe.name), "version": md_text(recipe.version),
        # line by line, so paragraphs stay; runs of blanks (tabs, an indent) as one space, never a code block
        "description": "\n".join(md_text(" ".join(line.split())) for line in recipe.description.splitlines()),
        "model": span(g.model), "model_revision": f" (revision {span(g.revision)})" if g.revision else "",
        "clip_model": md_text(s.clip.model), "clip_units": CLIP_UNITS[s.clip.units], "ssim_weight": s.ssim.weight,
        "ssim_size": s.ssim.size,
        "rows": f"{rows:,}", "width": g.resolution[0], "height": g.resolution[1],
        "image_format": recipe.format.image_format.upper(), "steps": g.steps, "guidance": g.guidance_scale,
        "dtype": g.dtype, "fingerprint": fingerprint, "cost": cost,
        "per_caption": g.max_candidates, "up_to": "up to " if g.adaptive else "",
        "adaptive": f" (adaptive: until score >= {g.until.min_score})" if g.adaptive else "",
        "load_from": repo_id or f"path/to/{recipe.name}-v{recipe.version}",
        "load_revision": f', revision="v{recipe.version}"' if repo_id else "",
        **rebuild_context(recipe),
        "fields": field_list(recipe),
        "funnel": funnel_table(caption_funnel, selection_funnel,
                               f"up to {g.max_candidates}, adaptive" if g.adaptive else g.images_per_caption),
        "best_per_caption": recipe.select.per_caption == "best",
        "score_lines": [_stats_line(name, selected[name]) for name in scores(recipe)],
        "histogram": HISTOGRAM, "samples": SAMPLES, "citation": CITATION,
        "recipe": md_fence(recipe.text.rstrip(), "yaml"),  # verbatim, in a fence no line of it can close
    }
    return DatasetCard.from_template(card_data(recipe, info, rows), template_path=str(TEMPLATE), **context)


# Sections added to a finished build's card after the build (`publish`'s "Changes since", `evaluate --card`):
# each between its own markers, so adding it again replaces it; new ones go where the template's anchor is.
SECTIONS_ANCHOR = "<!-- synthvlm:sections -->"


def set_section(card: str, key: str, markdown: str | None) -> str:
    """`card` with `markdown` as its section `key`, replacing an earlier one (None: without it); a card without
    the anchor (made before it existed) gets the section before its "## Models" heading, or at its end."""
    begin, end = f"<!-- synthvlm:section {key} -->", f"<!-- /synthvlm:section {key} -->"
    block = "" if markdown is None else f"{begin}\n{markdown.strip()}\n{end}\n"
    start = card.find(begin)
    stop = card.find(end, start) if start >= 0 else -1
    if stop >= 0:
        rest = card[stop + len(end):].removeprefix("\n")
        return card[:start] + block + (rest.removeprefix("\n") if not block else rest)
    if not block:
        return card
    for anchor in (SECTIONS_ANCHOR, "## Models\n"):
        if anchor in card:
            return card.replace(anchor, f"{block}\n{anchor}", 1)
    return card.rstrip("\n") + "\n\n" + block
