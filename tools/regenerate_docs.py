"""Regenerate what the README shows of real runs, from real runs, in one go:

    python tools/regenerate_docs.py --write     # rewrite README.md's outputs and docs/preview.png
    python tools/regenerate_docs.py             # only say what is out of date (exit 1 if anything is)

It builds the quickstart into a temporary folder (as the README's first command does), runs each
`<!-- readme:run NAME -->` block of README.md that has a `<!-- readme:output NAME -->` block after it, in a
folder where `build/synthvlm-quickstart-v0.1.0` is that build, and writes the output there; it renders the
quickstart's preview page in headless Chromium and writes the screenshot to docs/preview.png, with the recipe's
fingerprint and the digest of the page it shows in the PNG's text chunks; and it writes the recipe reference
(synthvlm_builder/recipe/docs.py). tests/test_readme.py runs the same blocks after the quickstart build and
fails when an output drifted (modulo timings and CPU thread counts); tests/test_preview.py fails when
docs/preview.png shows another page than `preview` makes now.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PREVIEW_PNG = ROOT / "docs" / "preview.png"
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
QUICKSTART_BUILD = "build/synthvlm-quickstart-v0.1.0"  # where the README's commands find the quickstart's build
WINDOW = (1200, 2000)
# What makes a screenshot's pixels comparable: sRGB, one device pixel per CSS pixel, no scrollbar.
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--force-color-profile=srgb",
                 "--force-device-scale-factor=1", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                 "--virtual-time-budget=10000")
PNG_FINGERPRINT, PNG_PAGE = "synthvlm:fingerprint", "synthvlm:page-sha256"
BLOCK = re.compile(r"^<!-- readme:(run|output) ([\w-]+) -->\n```(\w*)\n(.*?)^```$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    kind: str    # run: executed; output: what the run blocks of the same name print
    name: str    # blocks of one name run in order, in one folder
    lang: str    # bash or python (run), empty (output)
    body: str
    span: tuple  # where the body is in the README text


def readme_blocks(text: str) -> list[Block]:
    return [Block(m[1], m[2], m[3], m[4], m.span(4)) for m in BLOCK.finditer(text)]


def commands(block: Block) -> list[list[str]]:
    """The command lines of a bash run block, each split as the shell would (comments dropped)."""
    return [shlex.split(line, comments=True) for line in block.body.splitlines() if line.strip()]


def normalize(output: str) -> str:
    """An output as compared with the README's: what differs between runs and machines left out."""
    output = re.sub(r"\(\d+(\.\d+)? s\)", "(T s)", output)                        # verify's wall time
    return re.sub(r"\(\d+(, \d+)* CPU threads?\)", "(N CPU threads)", output)      # the machine's cores


def page_digest(html: str) -> str:
    """The sha256 of a preview page with its inlined images left out: the text, layout, scores and the
    fingerprint it shows (pixels' low bits depend on the CPU thread count; the build's tests pin them)."""
    return hashlib.sha256(re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "IMG", html).encode()).hexdigest()


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def browse(page: Path, *args: str, browser: str | None = None) -> subprocess.CompletedProcess:
    browser = browser or find_chromium()
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                              capture_output=True, text=True, timeout=120)


def cli(args: list[str], cwd: Path) -> str:
    """`synthvlm-build ARGS` in a fresh process from this checkout; its standard output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "synthvlm_builder", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"synthvlm-build {shlex.join(args)} failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def outputs(text: str, site: Path) -> dict[str, str]:
    """name -> what the run blocks of that name print, for every name that has an output block."""
    blocks = readme_blocks(text)
    wanted = {b.name for b in blocks if b.kind == "output"}
    out = {}
    for name in sorted(wanted):
        printed = []
        for block in (b for b in blocks if b.kind == "run" and b.name == name):
            assert block.lang == "bash", f"readme:output {name} follows a {block.lang} block"
            for words in commands(block):
                assert words[0] == "synthvlm-build", words
                printed.append(cli(words[1:], site))
        out[name] = "".join(printed).rstrip("\n")
    return out


def with_outputs(text: str, new: dict[str, str]) -> str:
    for block in reversed(readme_blocks(text)):  # from the end: earlier spans stay valid
        if block.kind == "output" and block.name in new:
            text = text[:block.span[0]] + new[block.name] + "\n" + text[block.span[1]:]
    return text


def screenshot(work: Path) -> tuple[Path, dict]:
    """The quickstart's preview rendered in Chromium: (the PNG, its text chunks)."""
    from synthvlm_builder.execution.plan import fingerprint
    from synthvlm_builder.recipe import load_recipe
    browser = find_chromium()
    if browser is None:
        raise SystemExit("no Chromium: install it from the system packages (apt-get install chromium)")
    cli(["preview", str(QUICKSTART), "--output", str(work / "preview")], work)
    page = work / "preview" / "index.html"
    shot = work / "preview.png"
    browse(page, f"--screenshot={shot}", browser=browser)
    return shot, {PNG_FINGERPRINT: fingerprint(load_recipe(QUICKSTART))[:12], PNG_PAGE: page_digest(page.read_text())}


def write_png(shot: Path, meta: dict, dest: Path) -> None:
    from PIL import Image, PngImagePlugin
    info = PngImagePlugin.PngInfo()
    for key, value in meta.items():
        info.add_text(key, value)
    Image.open(shot).convert("RGB").quantize(256).save(dest, optimize=True, pnginfo=info)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite README.md's outputs and docs/preview.png")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    text = README.read_text()
    with tempfile.TemporaryDirectory(prefix="synthvlm-docs-") as tmp:
        site = Path(tmp)
        cli([str(QUICKSTART), "--output", str(site / QUICKSTART_BUILD)], site)
        fresh = outputs(text, site)
        new_text = with_outputs(text, fresh)
        shot, meta = screenshot(site)
        from PIL import Image
        old_meta = Image.open(PREVIEW_PNG).text if PREVIEW_PNG.exists() else {}
        stale = [name for name in fresh if normalize(fresh[name]) != normalize(
            next(b.body for b in readme_blocks(text) if b.kind == "output" and b.name == name).rstrip("\n"))]
        png_stale = {k: old_meta.get(k) for k in meta} != meta
        if args.write:
            from synthvlm_builder.recipe.docs import main as write_reference
            README.write_text(new_text)
            write_reference(["--write", str(README)])
            write_png(shot, meta, PREVIEW_PNG)
            print(f"wrote the README outputs ({', '.join(sorted(fresh))}) and {PREVIEW_PNG.relative_to(ROOT)}")
            return 0
    for name in stale:
        print(f"README.md: the output of readme:run {name} is out of date")
    if png_stale:
        print(f"{PREVIEW_PNG.relative_to(ROOT)} shows another preview page than `preview` makes now")
    if stale or png_stale:
        print("run: python tools/regenerate_docs.py --write")
        return 1
    print("README outputs and docs/preview.png are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
