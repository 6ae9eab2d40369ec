"""The dataset card: Hub metadata, models and licences, and the pictures (score histograms; best and
worst selected rows with captions and scores) checked by what they show."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from buildutil import ROOT, read_rows
from hubserver import validate_card_metadata
from synthvlm_builder.recipe import load_recipe
from synthvlm_builder.release import card as cardlib
from synthvlm_builder.release import cardplots
from synthvlm_builder.stages.rows import scores

SCORES = scores(load_recipe(ROOT / "recipes" / "quickstart.yaml"))  # the quickstart's score columns


def metadata(build_dir: Path) -> dict:
    text = (build_dir / "README.md").read_text()
    return yaml.safe_load(text.split("---\n")[1])


def test_card_metadata_as_the_hub_documents_it(quickstart):
    out, _ = quickstart
    card = (out / "README.md").read_text()
    meta = metadata(out)
    assert meta["annotations_creators"] == ["machine-generated"]
    assert meta["source_datasets"] == ["original"]  # a local caption file
    assert meta["task_categories"] == ["image-to-text", "text-to-image"]
    assert meta["size_categories"] == ["n<1K"] and meta["license"] == "cc-by-4.0"
    assert validate_card_metadata(card, "dataset")[0] == []
    assert "(https://arxiv.org/abs/2407.20756)" in card  # the Hub turns it into an arxiv: tag
    digest = json.loads((out / "recipe.lock.json").read_text())["models"]["generate"]["weights"]
    assert f"- **Generator:** `builtin:shapes-sd`, weights shipped with synthvlm-builder `{digest}`, float32" in card
    assert "- **Scorer:** open_clip `builtin:shapes-clip`" in card
    assert "whose licence is\n`apache-2.0`." in card


def test_generator_licences_and_hub_sources():
    lic, note = cardlib.generator_license("stabilityai/stable-diffusion-xl-base-1.0")
    assert lic == "openrail++" and "Attachment A" in note
    lic, note = cardlib.generator_license("stabilityai/stable-diffusion-3-medium-diffusers")
    assert lic == "other" and "Community License" in note and "USD 1M" in note
    lic, note = cardlib.generator_license("someone/new-model")
    assert lic == "unknown" and "https://huggingface.co/someone/new-model" in note
    paper = load_recipe(ROOT / "recipes" / "llava_100k.yaml")
    assert cardlib.source_datasets(paper) == ["extended|liuhaotian/LLaVA-Pretrain"]
    lock = {"models": {"generate": {"model": paper.generate.model, "revision": paper.generate.revision},
                       "clip": {"model": "ViT-B-32", "pretrained": "openai", "prefix": "A photo depicts "}}}
    lines = cardlib.model_lines(paper, lock)
    assert lines[0] == ("- **Generator:** `stabilityai/stable-diffusion-xl-base-1.0`, revision"
                        " `462165984030d82259a11f4367a4eed129e94a7b`, variant `fp16`, float16")
    assert lines[1].startswith("- **Scorer:** open_clip `ViT-B-32` with pretrained `openai`")
    lock["models"]["generate"]["weights"] = "commit:" + paper.generate.revision  # what a build locks now
    assert cardlib.model_lines(paper, lock)[0] == (
        "- **Generator:** `stabilityai/stable-diffusion-xl-base-1.0`, commit `462165984030d82259a11f4367a4eed129e94a7b`"
        " (a commit pins every file of the repository), variant `fp16`, float16")
    sd3 = load_recipe(ROOT / "recipes" / "sd3_medium.yaml")
    text = (ROOT / "synthvlm_builder" / "release" / "card_template.md").read_text()
    assert "{{ generator_note }}" in text and cardlib.generator_license(sd3.generate.model)[0] == "other"


def test_the_font_is_the_one_pillow_ships():
    assert cardplots.font(13).getname() == ("Aileron", "Regular")
    assert isinstance(cardplots.font(13).path, io.BytesIO)  # embedded in Pillow, not a file of this machine


def test_captions_wrap_and_end_with_an_ellipsis():
    f = cardplots.font(13)
    long = "A very long caption about a red bicycle leaning against a brick wall " * 4
    lines = cardplots.wrap(long, f, 200, 3)
    assert len(lines) == 3 and lines[-1].endswith("…") and all(f.getlength(x) <= 200 for x in lines)
    assert cardplots.wrap("A cat on a mat.", f, 200, 3) == ["A cat on a mat."]
    broken = cardplots.wrap("x" * 200, f, 200, 3)
    assert len(broken) == 3 and broken[-1].endswith("…")


def _colours(im: Image.Image) -> set:
    return {tuple(c) for c in np.asarray(im.convert("RGB")).reshape(-1, 3)}


def test_histograms_have_a_panel_per_score(quickstart):
    out, _ = quickstart
    im = Image.open(out / "score_histogram.png")
    assert im.size == (760, 48 + 210 * len(SCORES))
    for p in range(len(SCORES)):
        panel = im.crop((0, 48 + 210 * p, 760, 48 + 210 * (p + 1)))
        assert cardplots.GREY in _colours(panel) and cardplots.BLUE in _colours(panel)
    score_panel = im.crop((0, 48 + 210 * SCORES.index("score"), 760, im.height))
    assert cardplots.RED in _colours(score_panel)  # the cut-off line


def test_sample_grid_shows_the_best_and_the_worst_selected(quickstart):
    out, _ = quickstart
    rows = sorted(read_rows(out), key=lambda r: (-r["score"], r["id"]))
    grid = Image.open(out / "sample_grid.png").convert("RGB")
    side_w = cardplots.PER_SIDE_COLS * cardplots.CELL
    assert grid.size == (2 * side_w + 24, 40 + cardplots.PER_SIDE_ROWS * cardplots.CELL_H)

    def shown(x: int, y: int) -> np.ndarray:  # the picture in the cell at (x, y), away from its rank label
        inner = cardplots.CELL - 2 * cardplots.PAD
        box = (x + cardplots.PAD, y + cardplots.PAD + 24, x + cardplots.PAD + inner, y + cardplots.PAD + inner)
        return np.asarray(grid.crop(box).resize((32, 26)), float)

    def nearest(pic: np.ndarray) -> str:
        def distance(r):
            im = Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB")
            inner = cardplots.CELL - 2 * cardplots.PAD
            # as the grid enlarges small images (cardplots._cell)
            im = im.resize((inner, inner), Image.NEAREST if inner >= 2 * max(im.size) else Image.LANCZOS)
            im = im.crop((0, 24, inner, inner)).resize((32, 26))
            return float(np.abs(np.asarray(im, float) - pic).mean())
        return min(rows, key=distance)["id"]

    assert nearest(shown(0, 40)) == rows[0]["id"]                        # #1, top left
    assert nearest(shown(cardplots.CELL, 40)) == rows[1]["id"]           # #2 beside it
    last = (side_w + 24 + cardplots.CELL, 40 + (cardplots.PER_SIDE_ROWS - 1) * cardplots.CELL_H)
    assert nearest(shown(*last)) == rows[-1]["id"]                       # the lowest selected, bottom right
    # text under every cell: dark caption pixels and the blue score line
    caption_band = grid.crop((0, 40 + cardplots.CELL, side_w, 40 + cardplots.CELL + 40))
    assert np.asarray(caption_band).min() < 60
    assert cardplots.BLUE in _colours(grid.crop((0, 40, side_w, 40 + cardplots.CELL_H)))


@pytest.mark.parametrize("n", [1, 5])
def test_small_selections_do_not_repeat_rows(tmp_path, quickstart, n):
    out, _ = quickstart
    rows = sorted(read_rows(out), key=lambda r: -r["score"])[:n]
    best, worst = rows[: -(-n // 2)], rows[-(-n // 2):]
    cardplots.sample_grid(tmp_path / "g.png", best, worst, n, ("clip_score", "ssim", "score"))
    im = Image.open(tmp_path / "g.png")
    assert im.height == 40 + -(-len(best) // cardplots.PER_SIDE_COLS) * cardplots.CELL_H


def card_text(build_dir: Path) -> str:
    """The card's body as a reader of the rendered page sees it (CommonMark, as the Hub renders it)."""
    import re
    from markdown_it import MarkdownIt
    body = (build_dir / "README.md").read_text().split("---\n", 2)[2]
    text = re.sub(r"<[^>]+>", "", MarkdownIt("commonmark").enable("table").render(body))
    return " ".join(text.split())


def test_the_card_says_how_many_candidates_and_what_was_kept(quickstart):
    out, _ = quickstart
    text = card_text(out)
    assert ("captions were curated, 4 candidate images were generated for each with builtin:shapes-sd, every image"
            " was scored against its caption") in text
    assert "of each caption's best candidate, the 24 best were kept." in text
    assert "an image was generated for each" not in text
    card = (out / "README.md").read_text()
    # the candidates are a step that adds rows, not a drop of 0
    assert "| candidates generated (4 per caption) | | 124 |" in card and "| candidates | 0 |" not in card
    assert "| best per caption | 93 | 31 |\n| top 24 by score | 7 | 24 |" in card


def test_a_text_prefix_shows_its_spaces_in_every_renderer():
    """A prefix ending in a space is shown quoted in a code span that needs no padding (renderers differ on
    padded spans); every span's content reads back as written."""
    from markdown_it import MarkdownIt
    paper = load_recipe(ROOT / "recipes" / "llava_100k.yaml")
    lock = {"models": {"generate": {"model": paper.generate.model, "revision": paper.generate.revision},
                       "clip": {"model": "ViT-B-32", "pretrained": "openai", "prefix": "A photo depicts "}}}
    line = cardlib.model_lines(paper, lock)[1]
    assert line.endswith(', text prefix `"A photo depicts "`'), line
    tokens = MarkdownIt("commonmark").parseInline(line)[0].children
    assert [t.content for t in tokens if t.type == "code_inline"] == ["ViT-B-32", "openai", '"A photo depicts "']
    assert cardlib.span("x`") == '``"x`"``' and cardlib.span("") == '`""`' and cardlib.span("a b") == "`a b`"


def test_histogram_subtitles_name_the_units_used():
    import dataclasses
    from synthvlm_builder.stages.rows import columns
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    docs = {c.name: c.doc for c in columns(recipe)}
    assert docs["clip_score"] == "the raw cosine of the open_clip image and text embeddings (score.clip.units: cosine)"
    assert docs["ssim"] == "SSIM of the image with itself resized down to 16 px and back up"
    assert docs["score"] == "the selection score: clip_score + 0.5 * ssim"
    tiny = load_recipe(ROOT / "recipes" / "curation_tiny.yaml")  # clip_score in clipscore units
    assert dataclasses.asdict(tiny.score.clip)["units"] == "clipscore"
    assert {c.name: c.doc for c in columns(tiny)}["clip_score"].startswith("CLIPScore, 2.5 * max(cosine, 0)")


def test_no_histogram_bar_straddles_the_cut_off(quickstart):
    from buildutil import read_candidates
    out, _ = quickstart
    cut = min(r["score"] for r in read_rows(out))
    values = np.array([c["score"] for c in read_candidates(out)], float)
    edges = cardplots.bin_edges(float(values.min()), float(values.max()), 40, cut)
    assert np.isclose(edges, cut, rtol=0, atol=1e-12).any() and edges[0] <= values.min() and edges[-1] >= values.max()
    assert np.allclose(np.diff(edges), (values.max() - values.min()) / 40)
    which = np.digitize(values, edges)
    for b in set(which):  # each bar holds candidates from one side of the cut-off only
        inside = values[which == b]
        assert (inside >= cut).all() or (inside < cut).all(), (b, inside, cut)
    assert np.array_equal(cardplots.bin_edges(0.0, 1.0, 40), np.linspace(0.0, 1.0, 41))  # no cut-off: as before
