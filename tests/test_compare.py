"""`synthvlm-build compare`: two small builds with known differences, through the CLI.

old: captions c000-c005 (v0.1.0); new: c002-c007 with c004's text edited (v0.2.0); both with one image per
batch (so an unchanged caption gives the same bytes in both builds, whatever its neighbours) and every
candidate (one per caption) kept. So: 2 rows added (c006, c007), 2 removed (c000, c001), 1 changed (c004's),
3 unchanged.

The Markdown golden comes from copies of these builds whose data files are rewritten with fixed rows (solid
images, fixed scores, and captions and ids written to break Markdown): their numbers are the same on every
machine, and markdown-it-py (a CommonMark parser, as GitHub renders comments) proves no data string becomes
HTML, a heading, emphasis or a link. The page is rendered in headless Chromium (tests/test_preview.py).
"""
import html
import io
import json
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from buildutil import CAPTIONS, ROOT, cli, read_rows, write_recipe
from test_preview import PROBE, browse

GOLDEN = ROOT / "tests" / "golden" / "compare.md"
EDITED = "A green parrot on a wooden fence. Number 4."


def _recipe(d: Path, version: str, ids: range, edited: dict) -> Path:
    path = write_recipe(d, batch_size=1, size=len(ids), shard_size=4)
    text = path.read_text().replace("version: 0.1.0", f"version: {version}")
    text = text.replace("images_per_caption: 2", "images_per_caption: 1")
    path.write_text(text.replace(f"  size: {len(ids)}\n", f"  size: {len(ids)}\n  per_caption: all\n"))
    with open(d / "caps.jsonl", "w") as f:
        for i in ids:
            text = edited.get(i, CAPTIONS[i % len(CAPTIONS)] + f" Number {i}.")
            f.write(json.dumps({"id": f"c{i:03d}", "caption": text}) + "\n")
    return path


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    cli(_recipe(root / "r-old", "0.1.0", range(0, 6), {}), "--output", root / "old")
    cli(_recipe(root / "r-new", "0.2.0", range(2, 8), {4: EDITED}), "--output", root / "new")
    return root


def compare(root: Path, *args, check=False):
    proc = cli("compare", *args, cwd=root, check=check)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_known_differences(builds):
    proc = compare(builds, "old", "new", "--output", "out", "--format", "json")
    assert proc.returncode == 3, proc.stderr  # data changed, version bumped
    report = json.loads(proc.stdout)
    assert report["verdict"] == "data changes; version bumped"
    rows = report["rows"]
    assert rows["added"] == ["caps:c006-0", "caps:c007-0"] and rows["removed"] == ["caps:c000-0", "caps:c001-0"]
    assert rows["changed"] == rows["recaptioned"] == ["caps:c004-0"]
    assert rows["unchanged"] == 3
    assert set(report["scores"]) == {"clip_score", "ssim", "score"}  # the data's own score columns
    for s in report["scores"].values():
        assert s["n_old"] == s["n_new"] == 6 and s["low"] <= s["delta"] <= s["high"] and 0 <= s["ks"] <= 1
    # the grid: the two changed rows, the same caption id on both sides, old and new captions and images
    grid = report["most_changed"]
    assert [(g["old"], g["new"]) for g in grid] == [("caps:c004-0", "caps:c004-0")]
    old_rows = {r["id"]: r for r in read_rows(builds / "old")}
    new_rows = {r["id"]: r for r in read_rows(builds / "new")}
    for g in grid:
        assert g["image_changed"] and g["pixels"] > 0 and g["new_caption"] == EDITED
        assert g["old_caption"] == old_rows[g["old"]]["caption"]
        assert g["new_scores"]["score"] == pytest.approx(new_rows[g["new"]]["score"])
    funnel = {f["step"]: f for f in report["funnel"]}
    assert funnel["read"]["old_counts"]["left"] == funnel["read"]["new_counts"]["left"] == 6
    # what was written beside the page: the same JSON, and the Markdown that is printed by default
    assert (builds / "out" / "compare.json").read_text() == proc.stdout
    md = compare(builds, "old", "new", "--output", "out").stdout
    assert md == (builds / "out" / "compare.md").read_text()
    assert "| added (ids only in new) | 2 |" in md and "| changed image (same id) | 1 |" in md


def test_exit_codes_are_diffs(builds):
    proc = compare(builds, "new", "old", "--output", "back")
    assert proc.returncode == 4 and "data changes but version NOT bumped" in proc.stdout
    assert proc.stderr.endswith("error: old: the data changed but version was not bumped\n")
    proc = compare(builds, "old", "old", "--output", "same", "--format", "json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["verdict"] == "same data"
    assert report["rows"]["unchanged"] == 6 and report["most_changed"] == []
    assert all(s["delta"] == 0 and s["ks"] == 0 for s in report["scores"].values())


@pytest.mark.slow  # four previews; the recipe review's own test runs recipe sides too
def test_recipes_are_compared_on_their_first_captions(builds):
    """Each recipe's first 3 curated captions through the real pipeline (as `preview` runs them)."""
    proc = compare(builds, "r-old/r.yaml", "r-new/r.yaml", "--captions", "3", "--offline", "--output", "recipes",
                   "--format", "json")
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["old"]["kind"] == report["new"]["kind"] == "recipe"
    # the builds' identities: the same recipe and inputs are the same data, previewed or built
    assert report["new"]["identity"] == json.loads((builds / "new" / "recipe.lock.json").read_text())["identity"]
    rows = report["rows"]
    assert rows["removed"] == ["caps:c000-0", "caps:c001-0"] and rows["added"] == ["caps:c003-0", "caps:c004-0"]
    assert rows["unchanged"] == 1 and rows["changed"] == []  # c002, the one caption both previews share
    read = next(f for f in report["funnel"] if f["step"] == "read")
    assert read["old_counts"]["left"] == read["new_counts"]["left"] == 3  # read until 3 captions survived
    assert any("a recipe, its first 3 curated captions previewed" in n for n in report["notes"])
    # a recipe previewed is its build: the same identity (exit 0) and, for the captions previewed, the same bytes
    proc = compare(builds, "new", "r-new/r.yaml", "--captions", "3", "--output", "recipes", "--format", "json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["verdict"] == "same data"
    assert report["rows"]["unchanged"] == 3 and report["rows"]["changed"] == report["rows"]["added"] == []
    assert len(report["rows"]["removed"]) == 3  # c005-c007: not among the first 3 captions
    assert any("the content identities are equal but rows differ" in n for n in report["notes"])


def test_bad_input_is_one_line(builds, tmp_path):
    for args, start in (
            (["nowhere", "new"], "error: OLD: nowhere: not a build dir"),
            (["old", str(tmp_path)], f"error: NEW: {tmp_path} is not a finished synthvlm build"),
            (["old", "missing.yaml"], "missing.yaml:1:1: (file): cannot read recipe"),
            (["old", "new", "--captions", "0"], "error: --captions: must be at least 1, got 0"),
            (["old", "new", "--output", "old/recipe.yaml"], "error: --output: "),
    ):
        proc = compare(builds, *args)
        assert proc.returncode == 2 and proc.stderr.startswith(start) and proc.stderr.count("\n") == 1, proc.stderr
    tampered = shutil.copytree(builds / "old", tmp_path / "tampered", ignore=shutil.ignore_patterns(".synthvlm"))
    stats = json.loads((tampered / "stats.json").read_text())
    stats["selection"]["steps"][0]["kept"] = "many"
    (tampered / "stats.json").write_text(json.dumps(stats))
    proc = compare(builds, "old", tampered)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: NEW: {tampered}: recipe.lock.json or stats.json is not a synthvlm build's")
    hub_model = builds / "r-new" / "hub.yaml"
    hub_model.write_text((builds / "r-new" / "r.yaml").read_text().replace("builtin:tiny-sd", "my-org/my-sd"))
    proc = compare(builds, "r-new/r.yaml", hub_model, "--offline")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: NEW: {hub_model}: not compared offline: generate.model my-org/my-sd would"
                                  " come over the network")
    (tmp_path / "index.html").write_text("<html>mine</html>")
    proc = compare(builds, "old", "new", "--output", tmp_path)
    assert proc.returncode == 2 and "is not a compare page" in proc.stderr
    assert (tmp_path / "index.html").read_text() == "<html>mine</html>"


# --------------------------------------------------------------------------- fixed rows: golden, safety
NASTY = ("<img src=x onerror=alert(1)> **bold** [link](https://example.com) ~~s~~ `tick` | pipe\n# heading",
         "# A caption that is a heading <script>alert(1)</script>")


def _png(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


def _rewrite(src: Path, dst: Path, rows: list[tuple]) -> Path:
    """A copy of build `src` whose data are `rows`: (id, caption, colour, clip_score, ssim)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".synthvlm"))
    for f in (dst / "data").glob("*.parquet"):
        f.unlink()
    table = pa.table({
        "id": [r[0] for r in rows], "caption": [r[1] for r in rows],
        "image": [{"bytes": _png(r[2]), "path": f"{r[0]}.png"} for r in rows],
        "clip_score": pa.array([r[3] for r in rows], pa.float32()),
        "ssim": pa.array([r[4] for r in rows], pa.float32()),
        "score": pa.array([r[3] + 0.5 * r[4] for r in rows], pa.float32())})
    pq.write_table(table, dst / "data" / "train-00000-of-00001.parquet")
    return dst


@pytest.fixture(scope="module")
def fixed(builds):
    root = builds / "fixed"
    old = [(f"caps:c00{i}-0", f"A red circle number {i}.", (200, 40, 40), 0.20 + 0.01 * i, 0.50) for i in range(6)]
    new = [r for r in old if r[0] != "caps:c000-0"]
    new[1] = ("caps:c002-0", NASTY[0], (40, 60, 230), 0.31, 0.55)   # another image and caption for c002
    new.append(("caps:c00`|<b>x</b>-0", NASTY[1], (20, 200, 210), 0.40, 0.60))  # an id that fights back
    _rewrite(builds / "old", root / "old", old)
    _rewrite(builds / "new", root / "new", new)
    return root


def test_markdown_golden_and_byte_stable(fixed):
    first = compare(fixed, "old", "new", "--output", "a")
    second = compare(fixed, "old", "new", "--output", "b")
    assert first.returncode == 3 and first.stdout == second.stdout  # the same bytes every run
    assert (fixed / "a" / "index.html").read_bytes() == (fixed / "b" / "index.html").read_bytes()
    if os.environ.get("SYNTHVLM_UPDATE_GOLDEN"):
        GOLDEN.write_text(first.stdout)
    assert first.stdout == GOLDEN.read_text()


def test_markdown_renders_no_data_as_markup(fixed):
    from markdown_it import MarkdownIt
    md = compare(fixed, "old", "new", "--output", "a").stdout
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(md)
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")]
    children = [c for t in tokens if t.children for c in t.children]
    assert not [c for c in children if c.type in ("html_inline", "link_open", "image", "em_open", "s_open")]
    assert [c.type for c in children].count("strong_open") == 1  # the verdict's, and none from the data
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["Data comparison: `old` → `new`", "Rows", "Scores", "Funnel", "Captions", "Most changed rows"]
    rendered = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md)
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered and "<img" not in rendered and "<script" not in rendered
    # every table row has its table's number of cells: no pipe from the data split a cell
    for block in re.findall(r"(?:^\|.*\|\n)+", md, re.M):
        counts = {len(re.findall(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(counts) == 1, block


def test_page_in_chromium_every_image_loads(fixed, tmp_path):
    page = fixed / "a" / "index.html"
    compare(fixed, "old", "new", "--output", "a")
    text = page.read_text()
    assert "<script" not in text.replace("&lt;script&gt;", "") and "<link" not in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    assert "&lt;img src=x onerror=alert(1)&gt;" in text  # autoescaped
    srcs = re.findall(r'<img src="([^"]+)"', text)
    # a plot per score column, and the old and new image of each changed pair (c002 and the ids of both sides)
    assert len(srcs) == 3 + 2 * 1 and all(s.startswith("data:image/png;base64,") for s in srcs)
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "\n</body>"))
    dom = browse(probed, "--dump-dom").stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["images"] == probe["loaded"] == len(srcs) and min(probe["widths"]) > 0


# --------------------------------------------------------------------------- Hub releases (slow)
@pytest.mark.slow
def test_release_side_and_changes_since_in_the_next_card(builds, hub, hub_env, tmp_path):
    """Publish old as v0.1.0; compare that release with the new build; publish new as v0.2.0: its card
    says what changed since v0.1.0 (computed from the release's downloaded files)."""
    repo = "tester/tiny-build"
    old, new = (shutil.copytree(builds / n, tmp_path / n) for n in ("old", "new"))  # manifests too: publish reads them
    proc = cli("publish", old, "--repo-id", repo, env=hub_env)
    assert "changed since" not in proc.stderr  # the first release has nothing to compare with
    assert "synthvlm:section changes-since" not in hub.read_file(repo, "README.md", "v0.1.0").decode()

    proc = cli("compare", f"{repo}@v0.1.0", new, "--output", tmp_path / "page", "--format", "json", env=hub_env,
               check=False)
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["old"]["kind"] == "release" and report["old"]["version"] == "0.1.0"
    assert len(report["rows"]["added"]) == len(report["rows"]["removed"]) == 2 and report["rows"]["unchanged"] == 3
    proc = cli("compare", f"{repo}@v9.9.9", new, "--output", tmp_path / "page", env=hub_env, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: OLD: tester/tiny-build has no revision 'v9.9.9'")

    proc = cli("publish", new, "--repo-id", repo, env=hub_env)
    assert "the card says what changed since v0.1.0" in proc.stderr
    card = hub.read_file(repo, "README.md", "v0.2.0").decode()
    assert card == (new / "README.md").read_text()  # the local card says what the published one says
    section = card[card.index("## Changes since v0.1.0"):card.index("<!-- /synthvlm:section changes-since -->")]
    assert "**✅ data changes; version bumped**:" in section and "`tester/tiny-build@v0.1.0`" not in section
    assert "| added (ids only in new) | 2 |" in section and "| changed image (same id) | 1 |" in section
    assert "### Scores" in section and "### Funnel" in section and "Most changed rows" not in section
    assert card.index("## Changes since v0.1.0") < card.index("## Models")
    # the same build published to a repository without an earlier release: the stale section goes
    cli("publish", new, "--repo-id", "tester/elsewhere", env=hub_env)
    assert "Changes since" not in hub.read_file("tester/elsewhere", "README.md", "v0.2.0").decode()
    assert "synthvlm:section changes-since" not in (new / "README.md").read_text()


def test_statistics_agree_with_scipy_and_are_seeded():
    import numpy as np
    from scipy import stats as scipy_stats

    from synthvlm_builder.analysis import stats
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.0, 1.0, 300), rng.normal(0.3, 1.0, 200)
    assert stats.ks_statistic(a, b) == pytest.approx(scipy_stats.ks_2samp(a, b).statistic, abs=1e-12)
    shift = stats.mean_shift(a, b)
    assert shift.delta == pytest.approx(b.mean() - a.mean()) and shift.low < shift.delta < shift.high
    # the percentile interval's width is about 2 * 1.96 standard errors of a difference of means
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert shift.high - shift.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert stats.mean_shift(a, b) == shift  # seeded: the same numbers every time
    assert stats.mean_shift(a, a).delta == 0 and stats.ks_statistic(a, a) == 0
    assert stats.ks_statistic([0, 1], [2, 3]) == 1
