"""Resume: kill -9 loses no finished work and changes no output; corrupt shards are redone."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from buildutil import cli, read_rows, write_recipe

SLOW = "  # slower shards give the kill a wide window\n"


def shard_recipe(d: Path, **kw) -> Path:
    kw.setdefault("n_captions", 12)
    kw.setdefault("shard_size", 2)
    recipe = write_recipe(d, size=kw.pop("size", 10), **kw)
    recipe.write_text(recipe.read_text().replace("  steps: 2\n", "  steps: 6\n").replace("[64, 64]", "[96, 96]"))
    return recipe


def events(out: Path) -> list[dict]:
    path = out / ".synthvlm" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start_and_kill(recipe: Path, out: Path, *extra) -> set[int]:
    """Start a build, SIGKILL it once a shard is finished and another is being written."""
    proc = subprocess.Popen([sys.executable, "-m", "synthvlm_builder", str(recipe), "--output", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shards = out / ".synthvlm" / "shards"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            done = list(shards.glob("shard-*.done.json")) if shards.exists() else []
            in_flight = list(shards.glob(".shard-*.parquet.tmp-*")) if shards.exists() else []
            if done and in_flight:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return {int(p.name[6:11]) for p in done}
            if proc.poll() is not None:
                raise AssertionError(f"build ended before it could be killed: {proc.stderr.read().decode()}")
            time.sleep(0.02)
        raise AssertionError("no shard finished in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    recipe = shard_recipe(d / "r")
    cli(recipe, "--output", d / "out")
    return read_rows(d / "out")


def test_kill_9_then_resume_gives_identical_dataset_without_redoing_shards(tmp_path, clean_build):
    recipe = shard_recipe(tmp_path / "r")
    out = tmp_path / "out"
    finished = start_and_kill(recipe, out)
    assert finished and not (out / "README.md").exists()
    markers_before = {i: (out / f".synthvlm/shards/shard-{i:05d}.done.json").read_text() for i in finished}
    first_run = len(events(out))

    proc = cli(recipe, "--output", out)
    assert "resuming:" in proc.stderr
    rerun = events(out)[first_run:]
    skipped = {e["shard"] for e in rerun if e["event"] == "shard_skipped"}
    redone = {e["shard"] for e in rerun if e["event"] == "shard_done"}
    assert finished <= skipped, "a finished shard was not reused"
    assert not finished & redone, "a finished shard was generated again"
    assert skipped | redone == set(range(6))
    for i, text in markers_before.items():
        assert (out / f".synthvlm/shards/shard-{i:05d}.done.json").read_text() == text
    assert not list((out / ".synthvlm/shards").glob(".*tmp*")), "the killed run's partial file was left behind"
    assert read_rows(out) == clean_build  # ids, image bytes, scores, seeds


def test_truncated_shard_is_detected_and_regenerated(tmp_path, clean_build):
    recipe = shard_recipe(tmp_path / "r")
    out = tmp_path / "out"
    cli(recipe, "--output", out)
    shard = out / ".synthvlm/shards/shard-00002.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    (out / "README.md").unlink()  # as if the run died before writing the dataset
    n = len(events(out))
    proc = cli(recipe, "--output", out)
    assert "shard 2: size" in proc.stderr and "regenerating" in proc.stderr
    rerun = events(out)[n:]
    assert [e["shard"] for e in rerun if e["event"] == "shard_done"] == [2]
    assert any(e["event"] == "shard_invalid" and e["shard"] == 2 for e in rerun)
    assert read_rows(out) == clean_build


def test_corrupt_shard_same_size_is_detected(tmp_path):
    recipe = shard_recipe(tmp_path / "r", n_captions=4, size=3)
    out = tmp_path / "out"
    cli(recipe, "--output", out)
    before = read_rows(out)
    shard = out / ".synthvlm/shards/shard-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / "README.md").unlink()
    proc = cli(recipe, "--output", out)
    assert "shard 1: checksum mismatch" in proc.stderr
    assert read_rows(out) == before


def test_other_recipe_in_same_dir_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    a = write_recipe(tmp_path / "a", n_captions=4, size=3)
    b = write_recipe(tmp_path / "b", n_captions=4, size=3)
    b.write_text(b.read_text().replace("seed: 7", "seed: 8"))
    cli(a, "--output", out)
    rows_a = read_rows(out)
    refused = cli(b, "--output", out, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "holds another recipe's build" in refused.stderr and "--overwrite" in refused.stderr
    assert read_rows(out) == rows_a, "a refused build must not touch the dir"
    cli(b, "--output", out, "--overwrite")
    rows_b = read_rows(out)
    assert [r["id"] for r in rows_b] and rows_b != rows_a
    assert json.loads((out / "recipe.lock.json").read_text())["recipe"]["seed"] == 8


def test_foreign_dir_is_never_taken(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3)
    for extra in ((), ("--overwrite",)):
        proc = cli(recipe, "--output", out, *extra, check=False)
        assert proc.returncode == 2 and "holds no synthvlm build" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_finished_build_rerun_is_a_no_op(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3)
    cli(recipe, "--output", tmp_path / "out")
    data = sorted((tmp_path / "out/data").iterdir())
    stamp = [p.stat().st_mtime_ns for p in data]
    proc = cli(recipe, "--output", tmp_path / "out")
    assert "already holds this build" in proc.stderr
    assert [p.stat().st_mtime_ns for p in data] == stamp


def test_same_data_new_version_rewrites_the_dataset_files_only(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3)
    out = tmp_path / "out"
    cli(recipe, "--output", out)
    rows = read_rows(out)
    n = len(events(out))
    recipe.write_text(recipe.read_text().replace("version: 0.1.0", "version: 0.1.1"))
    cli(recipe, "--output", out)
    assert not [e for e in events(out)[n:] if e["event"] == "shard_done"], "no image is generated again"
    assert "v0.1.1" in (out / "README.md").read_text() and "version: 0.1.1" in (out / "recipe.yaml").read_text()
    assert json.loads((out / "recipe.lock.json").read_text())["recipe"]["version"] == "0.1.1"
    assert read_rows(out) == rows
