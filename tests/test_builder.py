"""`recipe.as_builder()`: a real `datasets` builder whose download_and_prepare runs the build, whose
rows and Features are the build's, and whose cache is keyed by the content identity."""
import json
import shutil

import datasets
import pytest

from buildutil import read_rows, write_recipe
from synthvlm_builder import Recipe, Recorder, identity
from synthvlm_builder.stages.rows import features


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("builder")
    recipe = Recipe.from_yaml(write_recipe(tmp / "recipe", n_captions=2, size=2))
    log = Recorder()
    builder = recipe.as_builder(cache_dir=tmp / "cache", reporter=log)
    builder.download_and_prepare()
    return tmp, recipe, builder, log


def test_download_and_prepare_runs_the_build(prepared):
    tmp, recipe, builder, log = prepared
    assert isinstance(builder, datasets.ArrowBasedBuilder)
    assert builder.identity == identity(recipe) == builder.build_result.identity
    assert builder.build_dir == tmp / "cache" / "synthvlm_builds" / f"tiny-build-v0.1.0-{builder.identity[:16]}"
    assert builder.build_result.path == builder.build_dir and builder.build_result.action == "built"
    assert ("generating", 4, 4) in log.bars and "captions: 2 kept of 2 read" in log.messages
    stats = json.loads((builder.build_dir / "stats.json").read_text())
    assert stats["identity"] == builder.identity and stats["rows"] == 2
    assert builder.cache_dir.endswith(f"/default/0.1.0/{builder.identity}")  # datasets' cache: the identity


def test_as_dataset_is_the_builds_rows_with_its_features(prepared):
    _, recipe, builder, _ = prepared
    ds = builder.as_dataset(split="train")
    assert ds.features == features(recipe) == builder.info.features
    built = read_rows(builder.build_dir)
    assert ds.num_rows == 2 and ds["id"] == [r["id"] for r in built]
    for row, stored in zip(ds, built):
        assert row["image"].size == (64, 64) and row["caption"] == stored["caption"]
        assert row["clip_score"] == pytest.approx(stored["clip_score"]) and row["seed"] == stored["seed"]
    assert ds.with_format("arrow")["image"].to_pylist()[0]["bytes"] == built[0]["image"]["bytes"]


def test_streaming_reads_the_same_rows(prepared):
    _, recipe, builder, _ = prepared
    stream = builder.as_streaming_dataset(split="train")
    rows = list(stream)
    assert [r["id"] for r in rows] == [r["id"] for r in read_rows(builder.build_dir)]
    assert rows[0]["image"].size == (64, 64) and stream.features == features(recipe)


def test_second_prepare_is_a_cache_hit_and_a_lost_cache_resumes_the_build(prepared):
    tmp, recipe, builder, _ = prepared
    log = Recorder()
    again = Recipe.from_yaml(recipe.path).as_builder(cache_dir=tmp / "cache", reporter=log)
    before = sorted(p.stat().st_mtime_ns for p in builder.build_dir.rglob("*") if p.is_file())
    again.download_and_prepare()
    assert again.cache_dir == builder.cache_dir and again.build_result is None and log.messages == []
    assert again.as_dataset(split="train")["id"] == builder.as_dataset(split="train")["id"]

    shutil.rmtree(builder.cache_dir)  # datasets' cache gone: the finished build is found, not redone
    third = Recipe.from_yaml(recipe.path).as_builder(cache_dir=tmp / "cache", reporter=log)
    third.download_and_prepare()
    assert third.build_result.action == "exists" and not log.bars
    assert any(m.endswith("nothing to do") for m in log.messages)
    assert sorted(p.stat().st_mtime_ns for p in builder.build_dir.rglob("*") if p.is_file()) == before
    assert third.as_dataset(split="train").num_rows == 2


def test_other_input_content_is_another_cache_entry(prepared):
    tmp, recipe, builder, _ = prepared
    other = tmp / "other"
    shutil.copytree(recipe.path.parent, other)
    with open(other / "caps.jsonl", "a") as f:
        f.write(json.dumps({"id": "c999", "caption": "A green kite over a beach."}) + "\n")
    changed = Recipe.from_yaml(other / recipe.path.name).as_builder(cache_dir=tmp / "cache")
    assert changed.identity != builder.identity and changed.cache_dir != builder.cache_dir
    assert changed.build_dir != builder.build_dir
