"""The Ray Data executor gives the local executor's bytes, and resumes its builds."""
import json
import os
import signal

import pytest

from buildutil import cli, read_candidates, read_rows, work_root, write_recipe
from synthvlm_builder import layout
from test_resume import copy_killed, events

pytest.importorskip("ray.data", reason="the ray extra is not installed")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

RAY = "  ray:\n    workers: 2\n"
# Near-duplicate groups (the tiny random CLIP maps noise images close together) resolve the same way
# on both executors: the search runs over the whole build's candidates, in plan order.
NEAR_DUP = "screen:\n  near_duplicates: {clip_cosine: 0.995}\n"


@pytest.fixture
def ray_env(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    return dict(os.environ)


def with_ray(recipe, near_dup: bool = False):
    text = recipe.read_text() + RAY
    recipe.write_text(text.replace("select:\n", NEAR_DUP + "select:\n") if near_dup else text)
    return recipe


def test_ray_equals_local_byte_for_byte(tmp_path, ray_env):
    recipe = with_ray(write_recipe(tmp_path / "r", n_captions=8, shard_size=2, size=6), near_dup=True)
    recipe.write_text(recipe.read_text().replace("  size: 6\n", "  size: 6\n  allow_fewer: true\n"))
    cli(recipe, "--output", tmp_path / "local")
    proc = cli(recipe, "--output", tmp_path / "ray", "--executor", "ray", env=ray_env)
    assert "built" in proc.stderr and "rows" in proc.stderr
    steps = json.loads((tmp_path / "ray" / "stats.json").read_text())["selection"]["steps"]
    assert steps == json.loads((tmp_path / "local" / "stats.json").read_text())["selection"]["steps"]
    assert any(s["step"].startswith("near duplicates") and s["dropped"] > 0 for s in steps)
    assert read_candidates(tmp_path / "ray") == read_candidates(tmp_path / "local")
    local_files = sorted((tmp_path / "local/data").iterdir())
    ray_files = sorted((tmp_path / "ray/data").iterdir())
    assert [f.read_bytes() for f in ray_files] == [f.read_bytes() for f in local_files]
    ray_events = [e for e in events(tmp_path / "ray") if e["event"] == "shard_done"]
    assert len(ray_events) == 4 and all(e.get("executor") == "ray" for e in ray_events)


def test_local_build_killed_then_resumed_on_ray(tmp_path, ray_env, shard_clean, shard_killed):
    # conftest.py's runs, made once: the recipe built to the end locally, and killed at shard 2 (local executor)
    assert shard_killed[2].returncode == -signal.SIGKILL
    recipe, out = copy_killed(shard_killed, tmp_path)
    recipe = with_ray(recipe)
    clean = shard_clean[1]
    finished = {0, 1}
    assert sorted(p.name for p in (work_root(out) / layout.SHARDS).glob("*.done.json")) == [
        "shard-00000.done.json", "shard-00001.done.json"]
    n = len(events(out))
    cli(recipe, "--output", out, "--executor", "ray", env=ray_env)
    rerun = events(out)[n:]
    assert finished <= {e["shard"] for e in rerun if e["event"] == "shard_skipped"}
    assert not finished & {e["shard"] for e in rerun if e["event"] == "shard_done"}
    assert read_rows(out) == read_rows(clean)
