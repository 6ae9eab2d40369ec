"""Resume: kill -9 loses no finished work and changes no output; corrupt shards are redone.

The kill point is deterministic: SYNTHVLM_TEST_SIGNAL=KILL@N makes the build SIGKILL itself once
shard N has written its first batch (shards before N finished, shard N half written). One clean
build per module is copied by the tests that damage a build.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from buildutil import cli, read_rows, work_root, write_recipe
from synthvlm_builder import layout

N_SHARDS = 6


def shard_recipe(d: Path, **kw) -> Path:
    kw.setdefault("n_captions", 12)
    kw.setdefault("shard_size", 2)
    return write_recipe(d, size=kw.pop("size", 10), **kw)


def events(out: Path) -> list[dict]:
    roots = list((out / layout.BUILDS).glob("*"))
    path = work_root(out) / layout.EVENTS if roots else out / "missing"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start_and_kill(recipe: Path, out: Path, *extra, at: int = 2, sig: str = "KILL") -> subprocess.CompletedProcess:
    """Run a build in a fresh process that receives `sig` while shard `at` is half written."""
    env = {**os.environ, "SYNTHVLM_TEST_SIGNAL": f"{sig}@{at}"}
    return subprocess.run([sys.executable, "-m", "synthvlm_builder", str(recipe), "--output", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def clean(shard_clean):
    return shard_clean  # conftest.py: built once per run, shared with tests/test_ray.py


def copy_killed(shard_killed, dst: Path) -> tuple[Path, Path]:
    """A copy of conftest.py's build killed at shard 2 (made once per run): (recipe, output dir)."""
    recipe, out, _ = shard_killed
    shutil.copytree(recipe.parent, dst / "r")
    shutil.copytree(out, dst / "out")
    return dst / "r" / recipe.name, dst / "out"


@pytest.fixture
def copy_of_clean(clean, tmp_path):
    recipe, out = clean
    shutil.copytree(recipe.parent, tmp_path / "r")
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "r" / recipe.name, tmp_path / "out"


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_dataset_without_redoing_shards(tmp_path, clean, shard_killed):
    assert shard_killed[2].returncode == -signal.SIGKILL
    recipe, out = copy_killed(shard_killed, tmp_path)
    shards = work_root(out) / layout.SHARDS
    assert sorted(p.name for p in shards.glob("*.done.json")) == ["shard-00000.done.json", "shard-00001.done.json"]
    assert list(shards.glob(".shard-00002.parquet.tmp-*")), "shard 2 was being written when the kill came"
    assert not (out / "README.md").exists()
    markers_before = {i: (work_root(out) / layout.marker_file(i)).read_text() for i in (0, 1)}
    first_run = len(events(out))

    proc = cli(recipe, "--output", out)
    assert "resuming: 2 of 6 shards already done and verified" in proc.stderr
    rerun = events(out)[first_run:]
    assert {e["shard"] for e in rerun if e["event"] == "shard_skipped"} == {0, 1}
    assert {e["shard"] for e in rerun if e["event"] == "shard_done"} == {2, 3, 4, 5}
    for i, text in markers_before.items():
        assert (work_root(out) / layout.marker_file(i)).read_text() == text
    assert not [p for p in shards.iterdir() if ".tmp-" in p.name], "the killed run's partial file was left behind"
    assert read_rows(out) == read_rows(clean[1])  # ids, image bytes, scores, seeds


@pytest.mark.slow
def test_ctrl_c_exits_130_and_a_rerun_resumes(tmp_path, clean):
    recipe = shard_recipe(tmp_path / "r")
    out = tmp_path / "out"
    proc = start_and_kill(recipe, out, at=1, sig="INT")
    assert proc.returncode == 130
    assert "interrupted; rerun the same command to resume" in proc.stderr and "Traceback" not in proc.stderr
    shards = work_root(out) / layout.SHARDS
    assert [p.name for p in shards.glob("*.done.json")] == ["shard-00000.done.json"]
    assert not [p for p in shards.iterdir() if ".tmp-" in p.name], "an interrupted shard leaves no temp file"
    assert "resuming: 1 of 6 shards" in cli(recipe, "--output", out).stderr
    assert read_rows(out) == read_rows(clean[1])


def test_truncated_shard_is_detected_and_regenerated(copy_of_clean, clean):
    recipe, out = copy_of_clean
    shard = work_root(out) / layout.shard_file(2)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    (out / "README.md").unlink()  # as if the run died before writing the dataset
    n = len(events(out))
    proc = cli(recipe, "--output", out)
    assert "shard 2: size" in proc.stderr and "regenerating" in proc.stderr
    rerun = events(out)[n:]
    assert [e["shard"] for e in rerun if e["event"] == "shard_done"] == [2]
    assert any(e["event"] == "shard_invalid" and e["shard"] == 2 for e in rerun)
    assert read_rows(out) == read_rows(clean[1])


def test_corrupt_shard_same_size_is_detected(copy_of_clean, clean):
    recipe, out = copy_of_clean
    shard = work_root(out) / layout.shard_file(1)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / "README.md").unlink()
    proc = cli(recipe, "--output", out)
    assert "shard 1: checksum mismatch" in proc.stderr
    assert read_rows(out) == read_rows(clean[1])


def test_finished_build_rerun_is_a_no_op(copy_of_clean):
    recipe, out = copy_of_clean
    data = sorted((out / "data").iterdir())
    stamp = [p.stat().st_mtime_ns for p in data]
    proc = cli(recipe, "--output", out)
    assert "already holds this build" in proc.stderr
    assert [p.stat().st_mtime_ns for p in data] == stamp


def test_same_data_new_version_rewrites_the_dataset_files_only(copy_of_clean, clean):
    recipe, out = copy_of_clean
    n = len(events(out))
    recipe.write_text(recipe.read_text().replace("version: 0.1.0", "version: 0.1.1"))
    cli(recipe, "--output", out)
    assert not [e for e in events(out)[n:] if e["event"] == "shard_done"], "no image is generated again"
    assert "v0.1.1" in (out / "README.md").read_text() and "version: 0.1.1" in (out / "recipe.yaml").read_text()
    assert json.loads((out / "recipe.lock.json").read_text())["recipe"]["version"] == "0.1.1"
    assert read_rows(out) == read_rows(clean[1])


def test_other_recipe_in_same_dir_is_refused_unless_overwrite(copy_of_clean):
    recipe, out = copy_of_clean
    rows_a = read_rows(out)
    other = recipe.with_name("other.yaml")
    other.write_text(recipe.read_text().replace("seed: 7", "seed: 8").replace("size: 10", "size: 3")
                     .replace("      id_column: id\n", "      id_column: id\n      limit: 4\n"))
    refused = cli(other, "--output", out, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "holds another recipe's build" in refused.stderr and "--overwrite" in refused.stderr
    assert read_rows(out) == rows_a, "a refused build must not touch the dir"
    cli(other, "--output", out, "--overwrite")
    rows_b = read_rows(out)
    assert len(rows_b) == 3 and rows_b != rows_a
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
