"""`preview`: the quickstart's first captions through the real pipeline, as a page a real browser renders.

The browser is the system's headless Chromium (.ci/run installs it with apt); the page is screenshotted
(kept as an artifact in the test's tmp dir; SYNTHVLM_UPDATE_SCREENSHOT=1 also copies it to docs/preview.png
for the README) and its DOM dumped after a tiny probe script, added to a copy of the page, has written
how many images loaded into the DOM.
"""
import html
import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from PIL import Image

from buildutil import ROOT, cli

N = 16                 # the default --captions
PER_CAPTION = 4        # the quickstart's generate.images_per_caption
WINDOW = (1200, 2000)
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.setAttribute("data-probe", JSON.stringify({
    images: images.length,
    loaded: images.filter((im) => im.complete && im.naturalWidth > 0).length,
    widths: Array.from(new Set(images.map((im) => im.naturalWidth))),
  }));
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this machine: .ci/run installs it (apt-get install chromium); install it to run"
                " the browser checks")


def browse(page, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=10000", *args, page.as_uri()],
            capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("preview") / "quickstart"
    proc = cli("preview", ROOT / "recipes" / "quickstart.yaml", "--output", out)
    assert proc.stdout.strip() == f"wrote {out / 'index.html'}"
    return out / "index.html"


def test_page_renders_in_chromium(page, tmp_path):
    shot = tmp_path / "preview.png"  # the test artifact
    proc = browse(page, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    assert shot.exists(), proc.stderr
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    # not blank: a white page with text, tables and images has many colours and real contrast
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000 and image.std() > 20
    if os.environ.get("SYNTHVLM_UPDATE_SCREENSHOT"):
        Image.open(shot).convert("RGB").quantize(256).save(ROOT / "docs" / "preview.png", optimize=True)


def test_every_image_loads_and_the_funnel_is_there(page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "\n</body>"))
    dom = browse(probed, "--dump-dom").stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
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
