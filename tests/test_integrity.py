"""Integrity: a build never loses what the user had, never pairs a caption with another's image, and
its identity follows its data. Each scenario runs `synthvlm-build` as a user does and checks the exit
code, the one-line message and what is on disk afterwards."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from buildutil import ROOT, cli, read_rows, work_root, write_recipe
from synthvlm_builder import layout


def snapshot(out: Path) -> dict:
    """Every file of a build dir but its work state, with its bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and layout.WORK not in p.parts}


@pytest.fixture(scope="module")
def old_build(tmp_path_factory):
    """A finished build (4 captions, 2 shards) that later scenarios try to damage."""
    d = tmp_path_factory.mktemp("old")
    recipe = write_recipe(d / "r", n_captions=4, size=3, shard_size=2)
    cli(recipe, "--output", d / "out")
    return recipe, d / "out"


@pytest.fixture
def build_copy(old_build, tmp_path):
    recipe, out = old_build
    shutil.copytree(recipe.parent, tmp_path / "r")
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "r" / recipe.name, tmp_path / "out"


def other_recipe(recipe: Path, **changes) -> Path:
    """Another recipe (seed 8) beside `recipe`, with caps2.jsonl as its source when given."""
    text = recipe.read_text().replace("seed: 7", "seed: 8")
    if "captions" in changes:
        (recipe.parent / "caps2.jsonl").write_text("".join(json.dumps(c) + "\n" for c in changes["captions"]))
        text = text.replace("path: caps.jsonl", "path: caps2.jsonl")
    out = recipe.with_name("other.yaml")
    out.write_text(text)
    return out


def loads(out: Path) -> int:
    """Rows `datasets.load_dataset` reads from a local build."""
    import datasets
    return datasets.load_dataset(str(out), split="train", cache_dir=str(out.parent / "hf-load")).num_rows


GOOD = [{"id": f"n{i}", "caption": f"A small green boat number {i} on a calm lake."} for i in range(4)]


# --- data loss ------------------------------------------------------------------------------------

def test_overwrite_with_bad_input_leaves_the_old_build(build_copy):
    recipe, out = build_copy
    before = snapshot(out)
    bad = [*GOOD[:3], {"id": "n3", "caption": None}]  # a null caption on line 4
    proc = cli(other_recipe(recipe, captions=bad), "--output", out, "--overwrite", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "caps2.jsonl:4: 'caption' is NoneType, not text" in proc.stderr
    assert snapshot(out) == before and loads(out) == 3


def test_overwrite_with_no_surviving_caption_leaves_the_old_build(build_copy):
    recipe, out = build_copy
    before = snapshot(out)
    junk = [{"id": "j", "caption": "   "}]
    proc = cli(other_recipe(recipe, captions=junk), "--output", out, "--overwrite", check=False)
    assert proc.returncode == 1 and "no caption survived" in proc.stderr
    assert snapshot(out) == before and loads(out) == 3


def test_overwrite_with_a_bad_device_leaves_the_old_build(build_copy):
    recipe, out = build_copy
    before = snapshot(out)
    proc = cli(other_recipe(recipe), "--output", out, "--overwrite", "--device", "cuda:7", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --device: ")
    assert snapshot(out) == before


@pytest.mark.slow
def test_interrupted_overwrite_leaves_the_old_build_and_resumes(build_copy):
    recipe, out = build_copy
    before = snapshot(out)
    other = other_recipe(recipe)
    env = {**os.environ, "SYNTHVLM_TEST_SIGNAL": "INT@1"}
    proc = subprocess.run([sys.executable, "-m", "synthvlm_builder", str(other), "--output", str(out), "--overwrite"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr
    assert snapshot(out) == before and loads(out) == 3, "the old build is untouched until the new one is done"
    done = cli(other, "--output", out, "--overwrite")
    assert "resuming: 1 of 2 shards" in done.stderr
    assert json.loads((out / "recipe.lock.json").read_text())["recipe"]["seed"] == 8
    assert len(list((out / layout.BUILDS).iterdir())) == 1, "the old build's work state is gone"


def test_overwrite_never_removes_what_the_build_did_not_make(build_copy):
    recipe, out = build_copy
    (out / "notes.txt").write_text("mine")
    (out / "mydata").mkdir()
    (out / "mydata" / "x.csv").write_text("1,2")
    (out / ".bashrc").write_text("alias ll='ls -l'")
    (out / "data" / "extra.parquet").write_bytes(b"PAR1")
    before = snapshot(out)
    proc = cli(other_recipe(recipe), "--output", out, "--overwrite", check=False)
    assert proc.returncode == 2
    for name in (".bashrc", "data/extra.parquet", "mydata/", "notes.txt"):
        assert name in proc.stderr
    assert snapshot(out) == before
    for name in (".bashrc", "data/extra.parquet", "mydata/x.csv", "notes.txt"):
        (out / name).unlink()
    (out / "mydata").rmdir()
    cli(other_recipe(recipe), "--output", out, "--overwrite")
    files = json.loads((out / layout.MANIFEST).read_text())["files"]
    assert sorted(snapshot(out)) == sorted(files)


def test_captions_output_onto_a_source_is_refused(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3)
    source = tmp_path / "r" / "caps.jsonl"
    before = source.read_bytes()
    for target in (source, tmp_path / "r" / "." / "caps.jsonl"):
        proc = cli("captions", recipe, "--output", target, check=False)
        assert proc.returncode == 2 and "error: --output:" in proc.stderr and "captions.sources[0]" in proc.stderr
    assert source.read_bytes() == before


# --- wrong data --------------------------------------------------------------------------------------

def test_duplicate_ids_are_an_error_naming_both_lines(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3)
    with open(tmp_path / "r" / "caps.jsonl", "a") as f:
        f.write(json.dumps({"id": "c001", "caption": "Another caption with the same id."}) + "\n")
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 2
    assert f"{tmp_path / 'r' / 'caps.jsonl'}:5: id 'c001' repeats line 2" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_dropped_duplicate_ids_are_counted_and_every_count_agrees(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=4, extra="")
    with open(tmp_path / "r" / "caps.jsonl", "a") as f:
        f.write(json.dumps({"id": "c001", "caption": "Another caption with the same id."}) + "\n")
    text = recipe.read_text().replace("      id_column: id\n", "      id_column: id\n      duplicate_ids: drop\n")
    recipe.write_text(text.replace("  size: 4\n", "  size: 8\n  per_caption: all\n"))
    out = tmp_path / "out"
    proc = cli(recipe, "--output", out)
    stats = json.loads((out / "stats.json").read_text())
    dup = next(f for f in stats["captions"]["filters"] if f["name"] == "duplicate_ids")
    assert dup["dropped"] == 1 and dup["examples"] == [{"id": "caps:c001", "text": "Another caption with the same id."}]
    rows = read_rows(out)
    assert len({r["id"] for r in rows}) == len(rows) == 8
    card = (out / "README.md").read_text()
    assert "built 8 rows" in proc.stderr and stats["rows"] == 8 and "**Rows:** 8," in card
    assert "num_examples: 8" in card and "| caption filter `duplicate_ids` | 1 |" in card
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in (out / "data").iterdir()) == 8


def test_export_file_names_never_collide(tmp_path):
    ids = ["a:b", "a_b", "a b", "x" * 300]
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=4)
    (tmp_path / "r" / "caps.jsonl").write_text("".join(
        json.dumps({"id": i, "caption": f"A red kite number {n} over a beach."}) + "\n" for n, i in enumerate(ids)))
    cli(recipe, "--output", tmp_path / "out")
    cli("export", tmp_path / "out", "--llava", tmp_path / "llava")
    records = json.loads((tmp_path / "llava" / "synthvlm.json").read_text())
    rows = {r["id"]: r for r in read_rows(tmp_path / "out")}
    assert len(records) == 4 and len({r["image"] for r in records}) == 4
    for rec in records:
        assert (tmp_path / "llava" / rec["image"]).read_bytes() == rows[rec["id"]]["image"]["bytes"]
        assert len(Path(rec["image"]).name) <= 80
        assert rows[rec["id"]]["conversations"][1]["value"] == rec["conversations"][1]["value"]


def test_edited_caption_file_changes_the_identity(build_copy, tmp_path):
    recipe, out = build_copy
    lock = json.loads((out / "recipe.lock.json").read_text())
    caps = recipe.parent / "caps.jsonl"
    caps.write_text(caps.read_text().replace("Number 1.", "Number one."))
    proc = cli(recipe, "--output", out, check=False)
    assert proc.returncode == 2 and "from other input content (captions.sources[0] changed since)" in proc.stderr
    cli(recipe, "--output", tmp_path / "new")
    new = json.loads((tmp_path / "new" / "recipe.lock.json").read_text())
    assert new["fingerprint"] == lock["fingerprint"] and new["identity"] != lock["identity"]
    assert new["inputs"]["captions.sources[0]"] != lock["inputs"]["captions.sources[0]"]
    assert "Number one." in (work_root(tmp_path / "new") / "captions.jsonl").read_text()


def test_a_pinned_source_must_match(tmp_path):
    import hashlib
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3)
    digest = hashlib.sha256((tmp_path / "r" / "caps.jsonl").read_bytes()).hexdigest()
    recipe.write_text(recipe.read_text().replace("      id_column: id\n", f"      id_column: id\n      sha256: {digest}\n"))
    assert f"captions.sources[0]: sha256:{digest}" in cli("plan", recipe).stdout
    (tmp_path / "r" / "caps.jsonl").write_text((tmp_path / "r" / "caps.jsonl").read_text() + "\n")
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "captions.sources[0].sha256: " in proc.stderr and "the recipe pins" in proc.stderr


def test_diff_says_when_an_unchanged_local_source_is_unpinned(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3)
    out = cli("diff", recipe, recipe).stdout
    assert "captions.sources[0] is a local file with no sha256 pin" in out


def test_a_fixed_empty_caption_file_builds_without_overwrite(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3)
    caps = tmp_path / "r" / "caps.jsonl"
    good = caps.read_text()
    caps.write_text(json.dumps({"id": "x", "caption": "<image>"}) + "\n")
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "no caption survived" in proc.stderr
    caps.write_text(good)
    assert "built 3 rows" in cli(recipe, "--output", tmp_path / "out").stderr


def test_reserved_tokens_are_dropped_and_captions_stripped(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=2, size=2)
    (tmp_path / "r" / "caps.jsonl").write_text("".join(json.dumps(c) + "\n" for c in [
        {"id": "a", "caption": "  A quiet harbour at dawn.\n"}, {"id": "b", "caption": "Look at <image> here."},
        {"id": "c", "caption": "A cat on a mat."}, {"id": "d", "caption": "A dog <im_start> there."}]))
    out = tmp_path / "out"
    cli(recipe, "--output", out)
    captions = sorted(r["caption"] for r in read_rows(out))
    assert captions == ["A cat on a mat.", "A quiet harbour at dawn."]
    for row in read_rows(out):
        assert row["conversations"][0]["value"].count("<image>") == 1 and "<image>" not in row["caption"]
    reserved = next(f for f in json.loads((out / "stats.json").read_text())["captions"]["filters"]
                    if f["name"] == "reserved_tokens")
    assert reserved["dropped"] == 2 and [e["id"] for e in reserved["examples"]] == ["caps:b", "caps:d"]


# --- bad input: one line, no traceback ----------------------------------------------------------------

@pytest.mark.parametrize("line, words", [
    ("  guidance_scale: .nan\n", "is not a finite number"), ("  guidance_scale: -.inf\n", "is not a finite number"),
])
def test_non_finite_numbers_are_located(tmp_path, line, words):
    recipe = write_recipe(tmp_path / "r", n_captions=2, size=2)
    recipe.write_text(recipe.read_text().replace("  steps: 2\n", "  steps: 2\n" + line))
    for args in (("validate", recipe), (recipe, "--output", tmp_path / "out")):
        proc = cli(*args, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"{recipe}:") and words in proc.stderr


def test_deep_nesting_and_control_characters_are_located(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: x\nversion: 1.0.0\nextra: " + "[" * 450 + "]" * 450 + "\n")
    proc = cli("validate", deep, check=False)
    assert proc.returncode == 2 and f"{deep}:3:" in proc.stderr and "nested more than" in proc.stderr
    nul = tmp_path / "nul.yaml"
    nul.write_text("name: x\x00y\nversion: 1.0.0\n")
    proc = cli("validate", nul, check=False)
    assert proc.returncode == 2 and f"{nul}:1:8:" in proc.stderr and "U+0000" in proc.stderr


def test_paths_of_the_wrong_kind_are_clear_errors(old_build, tmp_path):
    recipe, out = old_build
    (tmp_path / "file").write_text("x")
    proc = cli(recipe, "--output", tmp_path / "file", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --output: ") and "is a regular file, not a folder" in proc.stderr
    proc = cli("captions", recipe, "--output", tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --output: ") and "is a folder" in proc.stderr
    proc = cli("export", out, "--llava", tmp_path / "file", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --llava: ") and "is a regular file, not a folder" in proc.stderr
    assert (tmp_path / "file").read_text() == "x"


def test_corrupt_state_says_how_to_recover(build_copy):
    recipe, out = build_copy
    before = snapshot(out)
    (out / layout.MANIFEST).write_text("{not json")
    proc = cli(recipe, "--output", out, check=False)
    assert proc.returncode == 2 and "manifest.json is corrupt" in proc.stderr and "--overwrite" in proc.stderr
    assert snapshot(out) == before
    cli(recipe, "--output", out, "--overwrite")
    assert loads(out) == 3 and json.loads((out / layout.MANIFEST).read_text())["files"]


def test_export_of_a_corrupt_parquet_is_a_clear_error(build_copy, tmp_path):
    _, out = build_copy
    data = next((out / "data").iterdir())
    data.write_bytes(data.read_bytes()[:100])
    proc = cli("export", out, "--llava", tmp_path / "llava", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: DIR: ") and "not a readable Parquet file" in proc.stderr
    assert not (tmp_path / "llava").exists()


def test_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "synthvlm_builder", "plan", "--json",
                             str(ROOT / "recipes" / "llava_100k.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first write (as `| head` after its lines)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and err == ""


def test_diff_never_passes_an_argument_to_git_as_an_option(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=2, size=2)
    proc = cli("diff", "--", "--output=x:r.yaml", recipe, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "is not a git revision" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"], "nothing was written"


def test_row_groups_are_bounded_by_bytes(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from synthvlm_builder.recipe import load_recipe
    from synthvlm_builder.release.dataset import ROW_BYTES_BESIDE_IMAGE, row_group_rows, write_parquet

    rng = np.random.default_rng(0)
    images = []
    for _ in range(6):  # noise PNGs do not compress: ~0.75 MB each
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(buf, format="PNG")
        images.append(buf.getvalue())
    largest = max(map(len, images))
    cap = 2 * (largest + ROW_BYTES_BESIDE_IMAGE) + 1  # two rows fit in a group, three do not
    assert row_group_rows(largest, cap) == 2 and row_group_rows(1000) == 100

    def rows():
        for i, data in enumerate(images):
            yield {"id": f"c:{i}-0", "image": {"bytes": data, "path": f"{i}.png"}, "caption": "noise",
                   "conversations": [{"from": "human", "value": "x\n<image>"}, {"from": "gpt", "value": "noise"}],
                   "clip_score": 0.0, "ssim": 0.0, "score": 0.0, "seed": i, "source": "c", "width": 512,
                   "height": 512}

    recipe = load_recipe(write_recipe(tmp_path / "r", n_captions=2, size=2))
    names, _ = write_parquet(tmp_path / "stage", rows(), recipe, max_image_bytes=largest, max_row_group_bytes=cap)
    meta = pq.ParquetFile(tmp_path / "stage" / names[0]).metadata
    assert meta.num_rows == 6 and meta.num_row_groups == 3
    assert all(meta.row_group(i).total_byte_size <= cap for i in range(meta.num_row_groups))
