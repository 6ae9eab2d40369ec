"""`synthvlm-build evaluate --proxy clip` on a tiny budget, through the CLI.

The datasets are folders of Parquet files of shapes-world pairs rendered by the world's renderer (the
captions all parse as the world's, so the held-out set defaults to the world's rendered held-out scenes
and the oracle adds attribute accuracy): the true pairs, and the same images with their captions shuffled.
A few dozen training steps already separate them by a wide margin.
"""
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from buildutil import cli

TINY = ["--steps", "30", "--batch-size", "16", "--image-size", "24", "--eval-size", "60", "--threads", "1"]
METRICS = {"i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"}


def write_pairs(folder: Path, images: list[bytes], captions: list[str]) -> Path:
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({"image": [{"bytes": b, "path": f"{i}.png"} for i, b in enumerate(images)],
                             "caption": captions}), folder / "data" / "train-00000-of-00001.parquet")
    return folder


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    import io

    from synthvlm_builder.models.shapes import world
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(3)
    scenes = [world.split_scene(rng, held_out=False) for _ in range(160)]
    captions = [world.caption(s, rng) for s in scenes]
    images = []
    for s in scenes:
        out = io.BytesIO()
        world.render(s).save(out, format="PNG")
        images.append(out.getvalue())
    shuffled = [captions[i] for i in np.roll(np.arange(len(captions)), 1)]  # no pair keeps its caption
    return write_pairs(root / "real", images, captions), write_pairs(root / "shuffled", images, shuffled)


def evaluate(*args, check=True) -> tuple:
    proc = cli("evaluate", *map(str, args), check=check)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, (json.loads(proc.stdout) if proc.returncode == 0 else None)


def test_true_pairs_beat_shuffled_ones(pairs):
    real, shuffled = pairs
    _, a = evaluate(real, "--seeds", "1", *TINY)
    _, b = evaluate(shuffled, "--seeds", "1", *TINY)
    assert a["dataset"] == {"spec": str(real), "pairs": 160, "shapes_world": True}
    assert a["eval"]["pairs"] == 60 and a["eval"]["oracle"] and a["eval"]["spec"].startswith("shapes-world renders")
    assert METRICS <= set(a["mean"]) and {"attribute_color", "attribute_all"} <= set(a["mean"])
    assert a["config"]["tokenizer"] == "shapes-world word-level" and a["config"]["threads"] == 1
    # measured here: R@1 0.25 / 0.27 (image->text / text->image) against 0.00 / 0.02 shuffled, R@5 0.65 / 0.57
    # against 0.05 / 0.12: margins of about half of that leave room for other machines
    for k, margin in (("i2t_r1", 0.1), ("t2i_r1", 0.1), ("i2t_r5", 0.25), ("t2i_r5", 0.2)):
        assert a["mean"][k] > b["mean"][k] + margin, (k, a["mean"], b["mean"])
    assert a["mean"]["attribute_all"] > b["mean"]["attribute_all"]


def test_same_seeds_and_threads_give_the_same_numbers(pairs, tmp_path):
    real, _ = pairs
    fast = ["--steps", "4", "--batch-size", "16", "--eval-size", "20", "--threads", "1"]
    _, two = evaluate(real, "--seeds", "2", *fast, "--output", tmp_path / "r.json")
    _, one = evaluate(real, "--seeds", "1", *fast)
    assert one["runs"][0] == two["runs"][0] and two["runs"][0] != two["runs"][1]
    assert json.loads((tmp_path / "r.json").read_text()) == two
    assert two["std"]["i2t_r1"] == pytest.approx(np.std([r["i2t_r1"] for r in two["runs"]], ddof=1), abs=1e-4)


def test_held_out_set_given_explicitly(pairs, tmp_path):
    real, _ = pairs
    _, r = evaluate(real, "--eval", real, "--seeds", "1", "--steps", "3", "--batch-size", "16", "--threads", "1")
    assert r["eval"] == {"spec": str(real), "pairs": 160, "groups": r["eval"]["groups"], "oracle": False}
    assert "attribute_all" not in r["mean"]
    # any image-caption pairs: open_clip's own tokenizer, images of any size resized to --image-size
    import io

    from PIL import Image
    images = []
    for i in range(12):
        out = io.BytesIO()
        Image.new("RGB", (48 + 8 * i, 40), (20 * i, 100, 200 - 10 * i)).save(out, format="JPEG")
        images.append(out.getvalue())
    photos = write_pairs(tmp_path / "photos", images, [f"A dog on a beach, photo {i}." for i in range(12)])
    _, r = evaluate(photos, "--eval", photos, "--seeds", "1", "--steps", "2", "--batch-size", "4", "--threads", "1")
    assert r["config"]["tokenizer"] == "open_clip CLIP BPE" and r["dataset"]["shapes_world"] is False
    assert r["eval"]["pairs"] == r["eval"]["groups"] == 12 and 0 <= r["mean"]["i2t_r1"] <= 1


def test_card_section_on_a_build(quickstart, tmp_path):
    import shutil
    build = shutil.copytree(quickstart[0], tmp_path / "qs", ignore=shutil.ignore_patterns(".synthvlm"))
    fast = ["--seeds", "1", "--steps", "3", "--batch-size", "8", "--eval-size", "10", "--threads", "1", "--card"]
    for _ in range(2):  # a second run replaces the section
        proc, r = evaluate(build, *fast)
        assert proc.stderr.endswith(f"added the proxy evaluation to {build / 'README.md'}\n")
    card = (build / "README.md").read_text()
    assert card.count("## Proxy evaluation") == 1 and card.count("<!-- synthvlm:section proxy-evaluation -->") == 1
    assert f"| image → text R@1 | {r['mean']['i2t_r1']:.3f} ± 0.000 |" in card
    assert card.index("## Proxy evaluation") < card.index("## Models")
    assert r["dataset"]["pairs"] == 24 and r["dataset"]["shapes_world"]  # the lock names builtin:shapes-sd


def test_bad_input_is_one_line(pairs, tmp_path):
    real, _ = pairs
    other = write_pairs(tmp_path / "photos", [b"not used"], ["A dog on a beach."])
    for args, start in (
            ([tmp_path / "nowhere"], f"error: DIR_OR_REPO: {tmp_path / 'nowhere'}: no such folder"),
            ([other], f"error: --eval: {other} is not shapes-world data"),
            ([tmp_path], f"error: DIR_OR_REPO: {tmp_path}: no Parquet files"),
            ([real, "--seeds", "0"], "error: --seeds: must be at least 1, got 0"),
            ([real, "--image-size", "30"], "error: --image-size: must be a multiple of 4"),
            ([real, "--card"], f"error: --card: adds the section to a local build dir's card: {real} is not one"),
            ([real, "--device", "tpu"], "error: --device: "),
            ([real, "--proxy", "dino"], "usage: synthvlm-build evaluate"),
    ):
        proc, _ = evaluate(*args, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith(start), proc.stderr
        assert proc.stderr.count("\n") == 1 or start.startswith("usage"), proc.stderr
