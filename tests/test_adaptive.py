"""Adaptive best-of-k (generate.images_per_caption: {max, until: {min_score}}; execution/rounds.py):
rounds made by the rule, seeds as fixed k's, verify rebuilds round batches, stats/card/plan say how many
candidates each caption took; bad forms exit 2 before any work. One fixed-k build calibrates the
threshold (the median round-0 score, so some captions stop after one candidate and some go on); one
adaptive build is shared by the tests."""
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from buildutil import cli, read_candidates, read_rows, work_root, write_recipe
from synthvlm_builder import layout
from synthvlm_builder.execution.plan import derive_seed

MAX = 3


def adaptive_recipe(d, threshold: float, **kw):
    path = write_recipe(d, **kw)
    text = path.read_text().replace("  images_per_caption: 2\n", f"  images_per_caption: {{max: {MAX}, until: "
                                    f"{{min_score: {threshold}}}}}\n")
    text = text.replace("      id_column: id\n", "      id_column: id\n      limit: 12\n")  # plan's counts
    path.write_text(text.replace("  size: 8\n", "  size: 8\n  allow_fewer: true\n"))
    return path


@pytest.fixture(scope="module")
def adaptive(tmp_path_factory):
    d = tmp_path_factory.mktemp("adaptive")
    fixed = write_recipe(d / "fixed", batch_size=3)
    cli(fixed, "--output", d / "fixed" / "out")
    first = sorted(r["score"] for r in read_candidates(d / "fixed" / "out") if r["k"] == 0)
    threshold = round((first[len(first) // 2 - 1] + first[len(first) // 2]) / 2, 6)
    recipe = adaptive_recipe(d / "r", threshold, batch_size=3)
    proc = cli(recipe, "--output", d / "out")
    return recipe, d / "out", threshold, proc


def per_caption(out) -> dict:
    cands: dict = {}
    for r in read_candidates(out):
        cands.setdefault(r["caption_id"], []).append(r)
    return {c: sorted(v, key=lambda r: r["k"]) for c, v in cands.items()}


@pytest.mark.slow
def test_rounds_follow_the_rule_with_the_fixed_seeds(adaptive):
    recipe, out, threshold, _ = adaptive
    cands = per_caption(out)
    assert len(cands) == 12  # round 0 covers every caption
    for caption_id, rows in cands.items():
        scores = [r["score"] for r in rows]
        assert [r["k"] for r in rows] == list(range(len(rows)))
        assert [r["seed"] for r in rows] == [derive_seed(7, caption_id, k) for k in range(len(rows))]
        assert all(max(scores[:j + 1]) < threshold for j in range(len(rows) - 1)), (caption_id, scores)
        assert len(rows) == MAX or max(scores) >= threshold, (caption_id, scores)
    counts = {len(v) for v in cands.values()}
    assert 1 in counts and max(counts) > 1, "the threshold stops some captions and not others"
    # each candidate names its round batch: shard positions of captions in plan order, its own among them
    for rows in cands.values():
        for r in rows:
            position = int(r["caption_id"][-3:]) % 4  # shard_size 4
            assert position in r["round_batch"] and r["round_batch"] == sorted(r["round_batch"])
            assert len(r["round_batch"]) <= 3  # batch_size


@pytest.mark.slow
def test_histogram_in_stats_card_cli_and_plan(adaptive):
    recipe, out, _, proc = adaptive
    cands = per_caption(out)
    stats = json.loads((out / "stats.json").read_text())
    expected = {}
    for rows in cands.values():
        expected[str(len(rows))] = expected.get(str(len(rows)), 0) + 1
    assert stats["candidates_per_caption"] == dict(sorted(expected.items()))
    images = sum(len(v) for v in cands.values())
    assert stats["ledger"]["total"]["images"] == images < 12 * MAX
    assert "candidates per caption: " + ", ".join(f"{n}: {c}" for n, c in sorted(expected.items())) in proc.stderr
    card = (out / "README.md").read_text()
    assert "Candidates per caption (adaptive best-of-k)" in card
    assert f"up to {MAX} candidate(s) per caption (adaptive: until score >= " in card
    assert all(f"| {n} | {c} |" in card for n, c in expected.items())
    assert f"{images} images were generated for this dataset" in card
    bound = cli("plan", recipe, "--json", cwd=recipe.parent).stdout
    assert json.loads(bound)["counts"]["candidates"] == 12 * MAX
    # after a build in its output dir, plan gives the expected count from that build
    shutil.copytree(out, recipe.parent / "build" / "tiny-build-v0.1.0")
    try:
        counts = json.loads(cli("plan", recipe, "--json", cwd=recipe.parent).stdout)["counts"]
        text = cli("plan", recipe, cwd=recipe.parent).stdout
    finally:
        shutil.rmtree(recipe.parent / "build")
    assert counts["expected_candidates"] == images
    assert f"{12 * MAX} at most; expected ~{images}" in text


@pytest.mark.slow
def test_verify_rebuilds_round_batches(adaptive, tmp_path):
    _, out, _, _ = adaptive
    rows = read_rows(out)
    assert any(not r["id"].endswith("-0") for r in rows), "a later round's row is among those verified"
    proc = cli("verify", out, "--sample", str(len(rows)))
    assert f"{len(rows)} of {len(rows)} row(s) match: verified" in proc.stdout
    # a round_batch that no longer holds its own caption is named, not regenerated from a guess
    build = tmp_path / "b"
    shutil.copytree(out, build)
    (data,) = (build / "data").glob("train-*.parquet")
    table = pq.read_table(data)
    edited = table.to_pylist()
    edited[0]["round_batch"] = [p for p in range(4) if p not in edited[0]["round_batch"]][:1] or [9]
    pq.write_table(pa.Table.from_pylist(edited, schema=table.schema), data)
    proc = cli("verify", build, "--sample", str(len(rows)), check=False)
    assert proc.returncode == 1
    assert edited[0]["id"] in proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(edited[0]["id"] + " "))
    assert "round_batch" in line


@pytest.mark.parametrize("value, message", [
    ("{max: 0, until: {min_score: 1}}", "must be an integer from 1 to 64, or {max: K, until: {min_score: S}}"),
    ("{max: 4}", "must be an integer from 1 to 64, or {max: K, until: {min_score: S}}"),
    ("{max: 4, until: {min_score: high}}", "must be an integer from 1 to 64, or {max: K, until"),
    ("{max: 4, until: {min_score: 1, max_score: 2}}", "must be an integer from 1 to 64, or {max: K"),
    ("{max: 65, until: {min_score: 1}}", "must be an integer from 1 to 64, or {max: K"),
])
def test_bad_forms_exit_2_before_any_work(tmp_path, value, message):
    path = write_recipe(tmp_path)
    path.write_text(path.read_text().replace("  images_per_caption: 2\n", f"  images_per_caption: {value}\n"))
    proc = cli(path, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"{path}:14:23: generate.images_per_caption: ") and message in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_preview_makes_the_rounds_a_build_makes(adaptive):
    """`preview` (and `compare`'s recipe sides) runs the captions as a build runs a shard of them: for the
    first 4 captions (the build's shard 0), the same candidates, seeds, scores and image bytes, in plan order."""
    from synthvlm_builder.curation.captions import Funnel
    from synthvlm_builder.execution.curate import first_captions
    from synthvlm_builder.execution.preview import run_candidates
    from synthvlm_builder.recipe import load_recipe

    recipe_path, out, _, _ = adaptive
    recipe = load_recipe(recipe_path)
    previewed, _ = run_candidates(recipe, first_captions(recipe, 4, Funnel()), "cpu")
    shard0 = pq.read_table(sorted((work_root(out) / layout.SHARDS).glob("shard-*.parquet"))[0]).to_pylist()
    order = [r["caption_id"] for r in shard0 if r["k"] == 0]  # round 0: every caption, in plan order
    assert len(order) == 4
    built = sorted(shard0, key=lambda r: (order.index(r["caption_id"]), r["k"]))
    assert len(built) < 4 * MAX  # the rule stopped some captions before the bound
    assert [(r["id"], r["seed"], r["image"], r["scores"]["score"]) for r in previewed] == \
        [(r["id"], r["seed"], r["image"], r["score"]) for r in built]
