"""Batch size: `auto` measures and records its choice; an out-of-memory error halves the batch for the
rest of the build without losing a finished shard, and the lock says which shard used which size."""
import json
import os
import subprocess
import sys

import pytest

from buildutil import cli, read_rows, work_root, write_recipe
from synthvlm_builder import layout


def recipe_with(d, batch_size, **kw):
    recipe = write_recipe(d, n_captions=6, size=12, shard_size=2, **kw)  # 3 shards of 4 candidates
    recipe.write_text(recipe.read_text().replace("  batch_size: 4\n", f"  batch_size: {batch_size}\n")
                      .replace("  size: 12\n", "  size: 12\n  per_caption: all\n"))
    return recipe


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same data made at batch 4 and at batch 2, without any fault."""
    d = tmp_path_factory.mktemp("ref")
    out = {}
    for size in (4, 2):
        cli(recipe_with(d / f"r{size}", size), "--output", d / f"b{size}")
        out[size] = {r["id"]: r for r in read_rows(d / f"b{size}")}
    return out


@pytest.mark.slow
def test_out_of_memory_halves_the_batch_and_keeps_finished_shards(tmp_path, reference, monkeypatch):
    recipe = recipe_with(tmp_path / "r", 4)
    out = tmp_path / "out"
    env = {**os.environ, "SYNTHVLM_TEST_SIGNAL": "KILL@1"}  # shard 0 finished at batch 4, then killed
    subprocess.run([sys.executable, "-m", "synthvlm_builder", str(recipe), "--output", str(out)], env=env,
                   capture_output=True, timeout=600)
    marker0 = (work_root(out) / layout.marker_file(0)).read_text()
    monkeypatch.setenv("SYNTHVLM_TEST_OOM_ABOVE", "2")  # now the device holds only 2 images
    proc = cli(recipe, "--output", out)
    assert "out of memory with a batch of 4: generating the rest of the build in batches of 2" in proc.stderr
    assert (work_root(out) / layout.marker_file(0)).read_text() == marker0, "finished shard kept"
    events = [json.loads(ln) for ln in (work_root(out) / layout.EVENTS).read_text().splitlines()]
    assert [e["batch_size"] for e in events if e["event"] == "oom_backoff"] == [2]
    lock = json.loads((out / "recipe.lock.json").read_text())
    assert lock["build"]["batch_size"] == 4 and lock["build"]["shard_batch_sizes"] == [4, 2, 2]
    state = json.loads((work_root(out) / layout.BATCH).read_text())
    assert state["batch_size"] == 2 and state["history"][-1]["how"] == "out of memory"
    rows = {r["id"]: r for r in read_rows(out)}
    for rid, row in rows.items():  # each shard is exactly what its own batch size makes
        shard = int(rid.split(":c")[1].split("-")[0]) // 2
        assert row == reference[4 if shard == 0 else 2][rid]


def test_out_of_memory_at_batch_one_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHVLM_TEST_OOM_ABOVE", "0")
    proc = cli(recipe_with(tmp_path / "r", 2), "--output", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "out of memory with a batch of 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_auto_measures_once_and_records_its_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHVLM_TEST_OOM_ABOVE", "4")  # 8 does not fit: the measurement stops there
    recipe = recipe_with(tmp_path / "r", "auto")
    out = tmp_path / "out"
    proc = cli(recipe, "--output", out)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("generate.batch_size auto:"))
    assert "1: " in line and "2: " in line and "4: " in line and "8: out of memory" in line
    chosen = int(line.rsplit("-> batch ", 1)[1])
    assert chosen in (1, 2, 4)
    state = json.loads((work_root(out) / layout.BATCH).read_text())
    assert state["batch_size"] == chosen and [m["batch_size"] for m in state["history"][0]["measured"]] == [1, 2, 4, 8]
    lock = json.loads((out / "recipe.lock.json").read_text())
    assert lock["build"]["batch_size"] == chosen and lock["build"]["batch_size_chosen_by"] == "auto"
    assert lock["recipe"]["generate"]["batch_size"] == "auto"
    # a rerun with another version reuses the recorded choice: no second measurement, same pixels
    recipe.write_text(recipe.read_text().replace("version: 0.1.0", "version: 0.1.1"))
    again = cli(recipe, "--output", out)
    assert "generate.batch_size auto:" not in again.stderr


def test_ray_needs_a_number_or_a_recorded_choice(tmp_path):
    proc = cli(recipe_with(tmp_path / "r", "auto"), "--output", tmp_path / "out", "--executor", "ray", check=False)
    assert proc.returncode == 2 and "generate.batch_size: auto is measured by the local executor" in proc.stderr


def test_a_bad_batch_size_is_located():
    from synthvlm_builder.errors import RecipeError
    from synthvlm_builder.recipe import load_recipe_text
    from buildutil import RECIPE
    text = RECIPE.format(model="builtin:tiny-sd", clip="builtin:tiny-clip", batch_size="fast", size=2,
                         image_format="png", shard_size=2)
    with pytest.raises(RecipeError, match="generate.batch_size: must be an integer from 1 to 1024, or auto"):
        load_recipe_text(text.replace("path: caps.jsonl", "path: /dev/null"), "r.yaml")
