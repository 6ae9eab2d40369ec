"""`verify`: a finished build (or a Hub release) regenerated from its recipe.lock.json, row by row.

The quickstart build (session fixture) is verified as it is; copies of it are tampered with. The Hub case
publishes it to the loopback Hub and verifies the tag in a fresh process, as a consumer would.
"""
import io
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from buildutil import cli, read_rows
from synthvlm_builder import layout
from synthvlm_builder.release.verify import pixel_difference, pixels_match
from synthvlm_builder.stages.format import encode_image

REPO = "synthvlm/synthvlm-quickstart"  # the quickstart recipe's publish.repo_id


def copy_build(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(layout.WORK))  # verify never reads the work state
    return dst


def edit_lock(build, change):
    path = build / "recipe.lock.json"
    lock = json.loads(path.read_text())
    change(lock)
    path.write_text(json.dumps(lock, indent=2))


def table_rows(stdout: str) -> dict:
    """id -> the rest of its line in verify's table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("id "))
    return {line.split()[0]: line for line in lines[start + 1:] if line.startswith("quickstart:")}


def test_fresh_build_verifies(quickstart, quickstart_verified):
    out = quickstart[0]
    proc = quickstart_verified  # `synthvlm-build verify build/synthvlm-quickstart-v0.1.0`, the README's command
    assert "pixels must be identical" in proc.stdout  # same device type and thread count as the lock
    # the half minute of work shows on standard error: the models loading, then each batch regenerated
    assert "loading builtin:shapes-sd and the scoring models on cpu" in proc.stderr
    assert "regenerating: 100%" in proc.stderr and "5/5" in proc.stderr, proc.stderr
    rows = table_rows(proc.stdout)
    assert len(rows) == 8 and all(line.endswith("  ok") for line in rows.values())
    assert set(rows) <= {r["id"] for r in read_rows(out, ["id"])}
    # each row is regenerated in its original batch: the quickstart's shards hold 16 captions, 4 candidates
    # each, in batches of 16, in the order of the build's curated captions
    order = [json.loads(line)["id"] for line in (out / "captions.jsonl").read_text().splitlines()]
    for row_id, line in rows.items():
        caption_id, k = row_id.rsplit("-", 1)
        shard, first = divmod(order.index(caption_id), 16)
        assert line.split()[1:3] == [str(shard), str((first * 4 + int(k)) // 16)], line
    assert "8 of 8 row(s) match: verified" in proc.stdout


@pytest.mark.slow  # a second verify of the quickstart (3 rows: each sampled row's whole batch is regenerated)
def test_the_seed_picks_the_rows(quickstart, quickstart_verified):
    rows = table_rows(quickstart_verified.stdout)  # seed 0, 8 rows
    again = table_rows(cli("verify", quickstart[0], "--seed", "1", "--sample", "3").stdout)
    assert len(again) == 3 and set(again) - set(rows), "seed 1 picked only rows seed 0 had picked"


@pytest.mark.slow
def test_tampered_build_names_the_rows(quickstart, tmp_path):
    build = copy_build(quickstart[0], tmp_path / "tampered")
    (data,) = (build / "data").glob("train-*.parquet")
    table = pq.read_table(data)
    rows = table.to_pylist()
    swapped, rescored = rows[3]["id"], rows[10]["id"]
    rows[3]["image"] = dict(rows[4]["image"])     # one image replaced by another real image of the build
    rows[10]["clip_score"] += 0.01                # one score edited
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), data)

    proc = cli("verify", build, "--sample", str(len(rows)), check=False)
    assert proc.returncode == 1
    result = table_rows(proc.stdout)
    assert "MISMATCH: pixels differ" in result[swapped]
    assert "MISMATCH: clip_score" in result[rescored] and "pixels" not in result[rescored].split("MISMATCH")[1]
    assert sum(line.endswith("  ok") for line in result.values()) == len(rows) - 2
    assert f"2 of {len(rows)} row(s) do NOT match" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {build}: row(s) that do not regenerate from the lock: {', '.join(sorted([swapped, rescored]))}")


def test_tampered_captions_or_recipe_are_caught(quickstart, tmp_path):
    build = copy_build(quickstart[0], tmp_path / "captions")
    caps = build / "captions.jsonl"
    assert "yellow circle" in caps.read_text()
    caps.write_text(caps.read_text().replace("yellow circle", "yellow square"))
    proc = cli("verify", build, check=False)
    assert proc.returncode == 1 and "captions.jsonl: its sha256 is not the lock's" in proc.stderr
    build = copy_build(quickstart[0], tmp_path / "recipe")
    edit_lock(build, lambda lock: lock["recipe"]["generate"].update(steps=5))
    proc = cli("verify", build, check=False)
    assert proc.returncode == 1 and "the lock was edited" in proc.stderr


def test_unloadable_model_is_refused_before_any_work(quickstart, tmp_path):
    build = copy_build(quickstart[0], tmp_path / "model")
    edit_lock(build, lambda lock: lock["recipe"]["generate"].update(model="some-org/never-downloaded"))
    proc = cli("verify", build, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{build / 'recipe.lock.json'}: cannot load the model the lock names:")
    assert "some-org/never-downloaded" in proc.stderr and proc.stderr.rstrip().endswith("(generate.model)")

    build = copy_build(quickstart[0], tmp_path / "weights")
    edit_lock(build, lambda lock: lock["inputs"].update({"score.clip": "sha256:" + "0" * 64}))
    proc = cli("verify", build, check=False)
    assert proc.returncode == 2 and "the lock names weights sha256:000" in proc.stderr
    assert proc.stderr.rstrip().endswith("(score.clip)")


def test_bad_input_is_one_line(quickstart, tmp_path):
    for args, flag in ((["not/a/build/dir"], "DIR_OR_REPO"), ([quickstart[0], "--revision", "v0.1.0"], "--revision"),
                       ([quickstart[0], "--sample", "0"], "--sample"), ([tmp_path], "DIR")):
        proc = cli("verify", *args, check=False)
        assert proc.returncode == 2, proc
        assert proc.stderr.startswith(f"error: {flag}: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_pixel_rule_exact_on_the_same_device_one_level_elsewhere():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    nudged = image.copy()
    spots = rng.random(image.shape) < 0.01
    nudged[spots] = np.clip(image[spots].astype(int) + 1, 0, 255).astype(np.uint8)  # one level, 1% of values
    other = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for fmt in ("png", "jpeg"):
        stored = encode_image(image, fmt, 95)
        assert pixels_match(*pixel_difference(stored, image, fmt, 95), fmt, exact=True)
        assert not pixels_match(*pixel_difference(stored, nudged, fmt, 95), fmt, exact=True)
        assert pixels_match(*pixel_difference(stored, nudged, fmt, 95), fmt, exact=False)
        assert not pixels_match(*pixel_difference(stored, other, fmt, 95), fmt, exact=False)
    two = np.clip(image.astype(int) + 2 * spots, 0, 255).astype(np.uint8)
    assert not pixels_match(*pixel_difference(encode_image(image, "png", 95), two, "png", 95), "png", exact=False)
    assert np.asarray(Image.open(io.BytesIO(encode_image(image, "png", 95)))).shape == image.shape


@pytest.mark.slow
def test_published_release_verifies_by_revision_and_its_cards_command_rebuilds_it(quickstart, hub, hub_env, tmp_path):
    """One release on the loopback Hub (published once), read two ways. `verify REPO --revision`: the tag's rows
    regenerate, an unknown revision is one line. The command the card of that release gives, run as a reader
    copies it, from an empty folder: the release's lock, recipe, stats and captions come from the Hub (not its
    data), and the rows are the same."""
    import re
    out = quickstart[0]
    cli("publish", out, env=hub_env)
    proc = cli("verify", REPO, "--revision", "v0.1.0", "--sample", "4", env=hub_env)
    assert proc.stdout.startswith(f"verify {REPO}@v0.1.0: synthvlm-quickstart v0.1.0")
    assert len(table_rows(proc.stdout)) == 4 and "4 of 4 row(s) match: verified" in proc.stdout
    proc = cli("verify", REPO, "--revision", "v9.9.9", env=hub_env, check=False)
    assert proc.returncode == 2 and proc.stderr == f"error: --revision: {REPO} has no revision 'v9.9.9'\n"

    section = (out / "README.md").read_text().split("## Recipe", 1)[1]
    command = re.search(r"`(synthvlm-build rebuild [^`]*)`", section).group(1)
    assert command == f"synthvlm-build rebuild {REPO} --revision v0.1.0"
    cli(*command.split()[1:], cwd=tmp_path, env=hub_env)
    rebuilt = tmp_path / "build" / "synthvlm-quickstart-v0.1.0"
    assert read_rows(rebuilt) == read_rows(out)
    lock, again = (json.loads((d / "recipe.lock.json").read_text()) for d in (out, rebuilt))
    assert (again["fingerprint"], again["identity"]) == (lock["fingerprint"], lock["identity"])
