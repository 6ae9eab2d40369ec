"""`export DIR --webdataset OUT`: tar shards read back by the real `webdataset` package, by
`datasets.load_dataset("webdataset", ...)` and by open_clip's own training data pipeline (with the
webdataset version open_clip pins), compared sample by sample with the build's rows."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from buildutil import ROOT, TOOLS, cli, missing_tool, read_rows
from synthvlm_builder.atomic import sha256_file
from synthvlm_builder.stages.format import sample_key

wds = pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def exported(quickstart, tmp_path_factory):
    out, _ = quickstart
    dest = tmp_path_factory.mktemp("wds") / "shards"
    proc = cli("export", out, "--webdataset", dest, "--shard-size", "10")
    return out, dest, proc


def test_webdataset_reads_back_every_sample_in_order(exported):
    out, dest, proc = exported
    rows = read_rows(out)
    assert len(rows) == 24
    assert "exported 24 samples in 3 shard(s)" in proc.stdout
    index = json.loads((dest / "index.json").read_text())
    assert [s["file"] for s in index["shards"]] == ["00000.tar", "00001.tar", "00002.tar"]
    assert [s["samples"] for s in index["shards"]] == [10, 10, 4] and index["samples"] == 24
    assert index["url"] == "{00000..00002}.tar"
    assert index["json_fields"][-2:] == ["key", "sha256"]
    # open_clip's training loader reads the sample counts here (open_clip_train/data.py get_dataset_size)
    assert json.loads((dest / "sizes.json").read_text()) == {"00000.tar": 10, "00001.tar": 10, "00002.tar": 4}
    for shard in index["shards"]:
        assert sha256_file(dest / shard["file"]) == shard["sha256"]
        assert (dest / shard["file"]).stat().st_size == shard["bytes"]
    # The real reader, through the brace pattern the index gives.
    samples = list(wds.WebDataset(str(dest / index["url"]), shardshuffle=False, empty_check=True))
    assert len(samples) == len(rows)
    for sample, row in zip(samples, rows):
        assert sample["__key__"] == sample_key(row["id"])
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {"png", "txt", "json"}  # the quickstart publishes PNG
        assert sample["png"] == row["image"]["bytes"]
        assert sample["txt"].decode("utf-8") == row["caption"]
        meta = json.loads(sample["json"])
        assert meta["id"] == row["id"] and meta["seed"] == row["seed"] and meta["source"] == row["source"]
        # img2dataset's own fields: the sample's key and the sha256 of its image bytes
        assert meta["key"] == sample["__key__"] and meta["sha256"] == hashlib.sha256(sample["png"]).hexdigest()
        assert meta["conversations"] == row["conversations"]
        for name in ("clip_score", "ssim", "score"):
            assert meta[name] == pytest.approx(row[name], abs=1e-7)
        assert (meta["width"], meta["height"]) == (row["width"], row["height"])


# open_clip's training data pipeline in training mode, as `python -m open_clip_train.main --dataset-type
# webdataset --train-data 'DIR/{00000..00002}.tar'` builds it (no --train-num-samples), in a subprocess
# whose webdataset is the 0.2.86 that open_clip pins (with webdataset 1.x its training path fails with
# KeyError 'fname' whatever the shards). Images pass through as arrays and captions as text, so each
# sample that comes out can be matched with a row.
OPEN_CLIP_TRAIN = """
import argparse, hashlib, json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np, webdataset
from open_clip_train.data import get_wds_dataset
assert webdataset.__version__ == "0.2.86", webdataset.__version__
args = argparse.Namespace(train_data=sys.argv[2], val_data=None, train_num_samples=None, dataset_resampled=False,
                          train_data_upsampling_factors=None, seed=0, batch_size=1, workers=0, world_size=1)
try:
    data = get_wds_dataset(args, lambda im: np.asarray(im), is_train=True, epoch=0, tokenizer=lambda t: [t])
except RuntimeError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
seen = [[text, hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()]
        for images, texts in data.dataloader for image, text in zip(images, texts)]
print(json.dumps({"num_samples": data.dataloader.num_samples, "seen": seen}))
"""


def open_clip_train(shards) -> dict:
    legacy = TOOLS / "webdataset-0.2.86"
    if not (legacy / "webdataset" / "__init__.py").is_file():
        missing_tool(f"open_clip pins webdataset<=0.2.86, which is not in {legacy}: install it with the README's"
                     " ci:tools commands (pip install --no-deps --target .tools/webdataset-0.2.86 webdataset==0.2.86)")
    proc = subprocess.run([sys.executable, "-c", OPEN_CLIP_TRAIN, str(legacy), str(shards)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_open_clip_trains_on_the_shards(exported, tmp_path):
    out, dest, _ = exported
    rows = read_rows(out)
    expected = sorted([r["caption"], hashlib.sha256(np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])).convert(
        "RGB")).tobytes()).hexdigest()] for r in rows)
    got = open_clip_train(dest / json.loads((dest / "index.json").read_text())["url"])
    assert got["num_samples"] == len(rows) == 24  # from sizes.json: no --train-num-samples needed
    assert sorted(got["seen"]) == expected        # every sample once per epoch, image and caption together
    # without sizes.json open_clip refuses the shards for training: the file is what makes it work
    bare = shutil.copytree(dest, tmp_path / "bare")
    (bare / "sizes.json").unlink()
    assert "--train-num-samples" in open_clip_train(bare / "{00000..00002}.tar")["error"]


def test_datasets_loads_the_shards(exported):
    from datasets import load_dataset
    out, dest, _ = exported
    ds = load_dataset("webdataset", data_files={"train": sorted(str(p) for p in dest.glob("*.tar"))}, split="train")
    rows = read_rows(out)
    assert ds.num_rows == 24
    assert ds["txt"] == [r["caption"] for r in rows]
    assert [j["id"] for j in ds["json"]] == [r["id"] for r in rows]
    assert ds[0]["png"].size == (rows[0]["width"], rows[0]["height"])


def test_byte_limit_and_deterministic_bytes(exported, tmp_path):
    out, dest, _ = exported
    cli("export", out, "--webdataset", tmp_path / "a", "--shard-bytes", "20kB")
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert len(index["shards"]) > 3 and sum(s["samples"] for s in index["shards"]) == 24
    for shard in index["shards"]:
        with tarfile.open(tmp_path / "a" / shard["file"]) as tar:
            members = tar.getmembers()
        assert len(members) == 3 * shard["samples"]
        assert shard["bytes"] <= 20_000 or shard["samples"] == 1
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    # the same build exports the same bytes
    cli("export", out, "--webdataset", tmp_path / "b", "--shard-size", "10")
    assert [sha256_file(tmp_path / "b" / f"{i:05d}.tar") for i in range(3)] == [
        sha256_file(dest / f"{i:05d}.tar") for i in range(3)]


def test_keys_are_unique_and_safe():
    ids = ["a.b-0", "a_b-0", "a b-0", "a:b-0", "a/b-0", "../x-0", ".hidden-0", "x" * 300 + "-0", "é.ü-1"]
    keys = [sample_key(i) for i in ids]
    assert len(set(keys)) == len(ids)
    assert all("." not in k and "/" not in k and k.isascii() and len(k) <= 70 for k in keys)


@pytest.mark.parametrize("args, flag, message", [
    (["--webdataset", "{t}/o", "--shard-size", "0"], "--shard-size", "not a positive number"),
    (["--webdataset", "{t}/o", "--shard-bytes", "lots"], "--shard-bytes", "not a positive byte count"),
    (["--webdataset", "{t}/o", "--shard-size", "5", "--shard-bytes", "1GB"], "--shard-size", "not both"),
    (["--llava", "{t}/o", "--shard-size", "5"], "--shard-size", "--webdataset only"),
    ([], "--llava", "give one of --llava OUT or --webdataset OUT"),
    (["--webdataset", "{t}/full"], "--webdataset", "is not empty"),
])
def test_bad_input_is_one_line_and_writes_nothing(exported, tmp_path, args, flag, message):
    out, _, _ = exported
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    proc = cli("export", out, *[a.format(t=tmp_path) for a in args], check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {flag}: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"


def test_not_a_build_is_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cli("export", tmp_path / "empty", "--webdataset", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "is not a finished synthvlm build" in proc.stderr
    assert not (tmp_path / "o").exists()
