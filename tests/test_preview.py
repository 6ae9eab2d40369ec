"""`preview`: the quickstart's first captions through the real pipeline, as a page a real browser renders.

The browser is the system's headless Chromium (README "Set up"; .ci/run installs it with apt, and sets
SYNTHVLM_REQUIRE_TOOLS so that these tests fail there rather than skip); it is looked for before the preview
is built. The page is screenshotted (kept as an artifact in the test's tmp dir; tools/regenerate_docs.py
writes docs/preview.png the same way) and its DOM dumped after a tiny probe script, added to a copy of the
page, has written what the browser made of every image: whether it loaded, where it is drawn, and the
opacity, filters and blend modes its pixels pass through on the way to the screen.
"""
import base64
import html
import io
import json
import re
import subprocess
import tempfile

import numpy as np
import pytest
from PIL import Image

from buildutil import ROOT, chromium, cli

N = 16                 # the default --captions
PER_CAPTION = 4        # the quickstart's generate.images_per_caption
WINDOW = (1200, 2000)
PROBE = """<script>
window.addEventListener("load", () => {
  const effective = (el) => {  // what an element's pixels pass through: its own and every ancestor's styles
    let opacity = 1;
    const effects = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const s = getComputedStyle(e);
      opacity *= parseFloat(s.opacity);
      for (const [name, value, none] of [["filter", s.filter, "none"], ["backdrop-filter", s.backdropFilter, "none"],
                                         ["mix-blend-mode", s.mixBlendMode, "normal"]]) {
        if (value && value !== none) effects.push(`${name}: ${value} on ${e.tagName}.${e.className}`);
      }
    }
    return {opacity, effects};
  };
  const images = Array.from(document.images);
  document.body.setAttribute("data-probe", JSON.stringify({
    images: images.length,
    loaded: images.filter((im) => im.complete && im.naturalWidth > 0).length,
    widths: Array.from(new Set(images.map((im) => im.naturalWidth))),
    candidates: Array.from(document.querySelectorAll("#candidates img")).map((im) => {
      const r = im.getBoundingClientRect(), card = im.closest(".card");
      return {id: card.id, kept: card.classList.contains("kept"), rect: [r.left, r.top, r.width, r.height],
              ...effective(im)};
    }),
  }));
});
</script>"""


def browse(page, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on `page`, with what makes its pixels comparable: sRGB, one device pixel per CSS pixel."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--force-color-profile=srgb", "--force-device-scale-factor=1", "--hide-scrollbars",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=10000", *args, page.as_uri()],
            capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    chromium()  # before the preview is built: no browser, nothing paid for (skipped, or failed in CI)
    out = tmp_path_factory.mktemp("preview") / "quickstart"
    proc = cli("preview", ROOT / "recipes" / "quickstart.yaml", "--output", out)
    assert proc.stdout.strip() == f"wrote {out / 'index.html'}"
    # the minute of work shows on standard error: the curation, the models loading, every image
    assert "captions: 100%" in proc.stderr and "16/16" in proc.stderr, proc.stderr
    assert "loading builtin:shapes-sd and the scoring models on cpu" in proc.stderr
    assert re.search(r"generating and scoring: 100%.*64/64", proc.stderr), proc.stderr
    return out / "index.html"


@pytest.fixture(scope="module")
def shot(page, tmp_path_factory):
    path = tmp_path_factory.mktemp("shot") / "preview.png"  # the test artifact
    proc = browse(page, f"--screenshot={path}")
    assert path.exists(), proc.stderr
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def probe(page, tmp_path_factory):
    probed = tmp_path_factory.mktemp("probe") / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "\n</body>"))
    dom = browse(probed, "--dump-dom").stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1))), dom


def test_page_renders_in_chromium(shot):
    assert shot.shape[:2] == (WINDOW[1], WINDOW[0])
    # not blank: a white page with text, tables and images has many colours and real contrast
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 1000 and shot.std() > 20


def test_images_are_shown_as_generated_kept_or_dropped(page, probe, shot):
    """Kept and dropped candidates differ by their card's border and badge only: no opacity, filter or blend
    reaches an image's pixels, and on the screenshot each drawn image holds its source's exact pixels."""
    found, dom = probe
    candidates = found["candidates"]
    assert len(candidates) == N * PER_CAPTION and sum(c["kept"] for c in candidates) == N
    for c in candidates:
        assert c["opacity"] == 1 and c["effects"] == [], c
    sources = dict(re.findall(r'<div class="card (?:kept|dropped)" id="([^"]+)">\s*<img src="data:image/png;base64,'
                              r'([^"]+)"', page.read_text()))
    shown = [c for c in candidates if c["rect"][1] + c["rect"][3] < WINDOW[1]]  # drawn inside the screenshot
    for wanted in (True, False):
        c = next(c for c in shown if c["kept"] is wanted)
        source = np.asarray(Image.open(io.BytesIO(base64.b64decode(sources[c["id"]]))).convert("RGB"))
        x, y, w, h = c["rect"]
        rows, cols = source.shape[:2]
        # the screen pixel at the centre of each source pixel (scaled with image-rendering: pixelated), the
        # outer ring left out (the rounded corners clip it)
        drawn = np.array([[shot[int(y + (i + .5) * h / rows), int(x + (j + .5) * w / cols)] for j in range(1, cols - 1)]
                          for i in range(1, rows - 1)])
        assert np.array_equal(drawn, source[1:-1, 1:-1]), (c["id"], np.abs(drawn.astype(int) - source[1:-1, 1:-1]).max())
    assert dom.count('class="card dropped"') == N * (PER_CAPTION - 1)
    assert 'class="badge dropped">dropped: best per caption' in dom


def test_every_image_loads_and_the_funnel_is_there(probe):
    found, dom = probe
    probe = {k: found[k] for k in ("images", "loaded", "widths")}
    assert probe == {"images": N * PER_CAPTION, "loaded": N * PER_CAPTION, "widths": [32]}
    assert dom.count('class="card kept"') == N  # best per caption: one of each caption's four candidates
    funnel = re.search(r'<table id="funnel">.*?</table>', dom, re.S).group(0)
    for name in ("alnum_ratio", "special_char_ratio", "char_repetition", "word_repetition", "flagged_words",
                 "max_tokens", "dedupe"):
        assert f"filter <code>{name}</code>" in funnel
    # among the first 19 captions read (until 16 survive), two junk captions are dropped by alnum_ratio and
    # a repeat by dedupe, each shown as an example
    assert re.search(r"alnum_ratio</code></td>\s*<td class=\"num\">2</td>", funnel)
    assert "quickstart:q011" in funnel and "quickstart:q017" in funnel
    assert re.search(r"dedupe</code></td>\s*<td class=\"num\">1</td>", funnel) and "quickstart:q005" in funnel
    assert "clip_score" in dom and "dropped: best per caption" in dom


def test_page_is_self_contained(page):
    text = page.read_text()
    assert "<script" not in text and "<link" not in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert len(srcs) == N * PER_CAPTION and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_bad_input_is_refused_in_one_line(tmp_path):
    recipe = ROOT / "recipes" / "quickstart.yaml"
    proc = cli("preview", recipe, "--captions", "0", "--output", tmp_path / "p", check=False)
    assert (proc.returncode, proc.stderr) == (2, "error: --captions: must be at least 1, got 0\n")
    (tmp_path / "file").write_text("x")
    proc = cli("preview", recipe, "--output", tmp_path / "file", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --output: ") and proc.stderr.count("\n") == 1
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<html>my own page</html>")
    proc = cli("preview", recipe, "--output", tmp_path / "site", check=False)
    assert proc.returncode == 2 and "is not a preview page" in proc.stderr
    assert (tmp_path / "site" / "index.html").read_text() == "<html>my own page</html>"  # untouched
    assert not (tmp_path / "p").exists()
