"""select.budget, an accepted-rows target (stages/budget.py, execution/target.py): captions streamed in
plan order until select.size rows pass the thresholds, within a budget of captions or candidates; the
build makes no shard past the one reaching the target; shortfalls as without a budget; bad forms exit 2.
One unbudgeted build of every candidate is the reference the budgeted selections are computed from."""
import json

import pytest

from buildutil import cli, read_candidates, read_rows, work_root, write_recipe
from synthvlm_builder import layout
from synthvlm_builder.atomic import TMP_MARK


def budget_recipe(d, budget: str, size: int, extra_select: str = ""):
    path = write_recipe(d, n_captions=10, shard_size=2, size=size)
    text = path.read_text().replace(f"  size: {size}\n", f"  size: {size}\n  budget: {budget}\n{extra_select}")
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Every candidate of the 10 captions (no budget), in plan order."""
    d = tmp_path_factory.mktemp("ref")
    recipe = write_recipe(d, n_captions=10, shard_size=2, size=10)
    cli(recipe, "--output", d / "out")
    return read_candidates(d / "out")


def expected_ids(reference, size: int, threshold: float, captions_limit: int = 99) -> tuple[list[str], int]:
    """The reference's selection over the shortest prefix of captions holding `size` passing captions."""
    order = list(dict.fromkeys(r["caption_id"] for r in reference))
    passed, used = 0, 0
    for cid in order[:captions_limit]:
        used += 1
        passed += any(r["clip_score"] >= threshold for r in reference if r["caption_id"] == cid)
        if passed >= size:
            break
    best = {}
    for r in reference:
        if r["caption_id"] in order[:used] and r["clip_score"] >= threshold:
            if r["caption_id"] not in best or (r["score"], -r["k"]) > (best[r["caption_id"]]["score"],
                                                                      -best[r["caption_id"]]["k"]):
                best[r["caption_id"]] = r
    top = sorted(best.values(), key=lambda r: (-r["score"], r["id"]))[:size]
    return sorted(r["id"] for r in top), used


@pytest.mark.slow
def test_target_reached_stops_making_shards_and_selects_the_prefix(reference, tmp_path):
    scores = sorted(r["clip_score"] for r in reference)
    threshold = round(scores[len(scores) // 2], 6)  # about half the candidates fail it
    want, used = expected_ids(reference, 3, threshold)
    assert used < 9, "the target is reached before the last shard"
    recipe = budget_recipe(tmp_path, "{captions: 10}", 3, f"  min_clip_score: {threshold}\n")
    proc = cli(recipe, "--output", tmp_path / "out")
    assert sorted(r["id"] for r in read_rows(tmp_path / "out", ["id"])) == want
    made = sorted(p.name for p in (work_root(tmp_path / "out") / layout.SHARDS).glob("*.done.json"))
    assert made == [layout.marker_file(i).split("/")[-1] for i in range(-(-used // 2))]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["selection"]["budget"] == {"captions": 10, "captions_used": used, "candidates_used": 2 * used,
                                            "target_reached": True}
    assert f"first {used} captions (budget 10 captions)" in proc.stderr
    # a rerun finds it built; a resume after the last needed shard makes no further one
    assert "nothing to do" in cli(recipe, "--output", tmp_path / "out").stderr


@pytest.mark.slow
def test_budget_spent_before_the_target_is_a_shortfall(reference, tmp_path):
    recipe = budget_recipe(tmp_path / "a", "{candidates: 6}", 5)
    proc = cli(recipe, "--output", tmp_path / "a" / "out", check=False)
    assert proc.returncode == 1
    assert "only 3 of the 5 requested rows passed selection" in proc.stderr  # 6 candidates = 3 captions
    assert "first 3 captions (budget 6 candidates)" in proc.stderr
    assert not (tmp_path / "a" / "out" / "data").exists()
    recipe = budget_recipe(tmp_path / "b", "{candidates: 6}", 5, "  allow_fewer: true\n")
    cli(recipe, "--output", tmp_path / "b" / "out")
    assert sorted(r["id"] for r in read_rows(tmp_path / "b" / "out", ["id"])) == expected_ids(reference, 5, -9, 3)[0]


@pytest.mark.parametrize("budget", ["{captions: 0}", "{rows: 3}", "{captions: 2, candidates: 3}", "100"])
def test_bad_budget_exits_2_before_any_work(tmp_path, budget):
    recipe = budget_recipe(tmp_path, budget, 8)
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"{recipe}:") and "select.budget: must be {captions: N} or {candidates: N}" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_ray_stops_once_the_target_is_reached(reference, tmp_path, monkeypatch):
    """The Ray executor ends the run after the finished shard that reaches the target: the rows are the
    local build's, and of 5 shards, the last (never needed) is not made; no partial write is left."""
    pytest.importorskip("ray.data", reason="the ray extra is not installed")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    scores = sorted(r["clip_score"] for r in reference)
    threshold = round(scores[len(scores) // 2], 6)
    want, used = expected_ids(reference, 3, threshold)
    recipe = budget_recipe(tmp_path, "{captions: 10}", 3, f"  min_clip_score: {threshold}\n")
    text = recipe.read_text()
    recipe.write_text(text.replace("execution:\n", "execution:\n  executor: ray\n  ray:\n    workers: 1\n", 1))
    assert "executor: ray" in recipe.read_text()
    cli(recipe, "--output", tmp_path / "out")
    assert sorted(r["id"] for r in read_rows(tmp_path / "out", ["id"])) == want
    root = work_root(tmp_path / "out")
    made = sorted(p.name for p in (root / layout.SHARDS).glob("*.done.json"))
    needed = -(-used // 2)
    assert made[:needed] == [layout.marker_file(i).split("/")[-1] for i in range(needed)]
    assert len(made) < 5, made  # one worker, one shard at a time: it stopped before the end
    assert not [p for p in root.rglob(".*") if TMP_MARK in p.name], "a stopped shard's partial write is left"
    assert '"event": "target_reached"' in (root / layout.EVENTS).read_text()
