"""Recipe options and flags, end to end through `synthvlm-build`: each one visible in what is built."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from buildutil import assert_scores_match_published, cli, read_rows, write_recipe

LONG = ("A very long caption about a red bicycle leaning against a brick wall on a sunny afternoon in a quiet"
        " street while pigeons walk past and a baker opens the shop door across the road")
PROMPTS = ["Describe it.", "What is shown here?"]


@pytest.fixture(scope="module")
def options_build(tmp_path_factory):
    """webp, custom prompts, per_caption: all, truncate: true, a scheduler override, and a recipe whose
    device (cuda, absent here) is overridden by --device cpu."""
    d = tmp_path_factory.mktemp("options")
    recipe = write_recipe(d / "r", n_captions=4, size=8, image_format="webp")
    with open(d / "r" / "caps.jsonl", "a") as f:
        f.write(json.dumps({"id": "long", "caption": LONG}) + "\n")
    text = recipe.read_text()
    text = text.replace("      id_column: id\n", "      id_column: id\n  filters:\n    max_tokens: 20\n"
                                                  "    truncate: true\n")
    text = text.replace("  dtype: float32\n", "  dtype: float32\n  scheduler: ddim\n")
    text = text.replace("  size: 8\n", "  size: 10\n  per_caption: all\n")
    text = text.replace("  image_format: webp\n", "  image_format: webp\n  prompts:\n"
                        + "".join(f"    - {p}\n" for p in PROMPTS))
    text = text.replace("  device: cpu\n", "  device: cuda\n")
    recipe.write_text(text)
    proc = cli(recipe, "--output", d / "out", "--device", "cpu")
    return d / "out", proc


def test_per_caption_all_keeps_every_candidate(options_build):
    out, proc = options_build
    rows = read_rows(out)
    assert len(rows) == 10 and "built 10 rows" in proc.stderr
    by_caption = {}
    for r in rows:
        by_caption.setdefault(r["id"].rsplit("-", 1)[0], []).append(r["id"])
    assert sorted(len(v) for v in by_caption.values()) == [2, 2, 2, 2, 2]  # both candidates of each caption


def test_webp_images(options_build):
    out, _ = options_build
    assert_scores_match_published(out)  # webp is lossy: the scores are of the decoded published bytes
    for r in read_rows(out):
        assert Image.open(io.BytesIO(r["image"]["bytes"])).format == "WEBP"
        assert r["image"]["path"].endswith(".webp")


def test_custom_prompts_reach_conversations(options_build):
    out, _ = options_build
    for r in read_rows(out):
        human, gpt = r["conversations"]
        assert human == {"from": "human", "value": f"{PROMPTS[r['seed'] % 2]}\n<image>"}
        assert gpt == {"from": "gpt", "value": r["caption"]}
    assert {r["conversations"][0]["value"] for r in read_rows(out)} == {p + "\n<image>" for p in PROMPTS}


def test_truncate_cuts_long_captions_to_max_tokens(options_build):
    from synthvlm_builder.models.tokenizer import caption_tokenizer
    out, _ = options_build
    long_rows = [r for r in read_rows(out) if r["id"].startswith("caps:long-")]
    assert len(long_rows) == 2
    cut = long_rows[0]["caption"]
    assert LONG.startswith(cut) and len(cut) < len(LONG)
    assert caption_tokenizer("builtin:tiny-sd").count(cut) <= 20
    stats = json.loads((out / "stats.json").read_text())
    assert stats["captions"]["truncated"] == 1


def test_device_flag_overrides_the_recipe(options_build):
    out, _ = options_build
    lock = json.loads((out / "recipe.lock.json").read_text())
    assert lock["recipe"]["execution"]["device"] == "cuda" and lock["build"]["device"] == "cpu"


def test_scheduler_variant_and_compile_reach_the_pipeline(tmp_path):
    """The worker every executor runs, built from a recipe: its pipeline has what the recipe says."""
    import diffusers
    import torch

    from synthvlm_builder.execution.worker import ShardWorker
    from synthvlm_builder.models.builtin import builtin_dir
    from synthvlm_builder.recipe import load_recipe

    # A pipeline folder holding only fp16-variant weight files: it loads only if `variant` reaches
    # from_pretrained.
    pipe = diffusers.DiffusionPipeline.from_pretrained(builtin_dir("tiny-sd"))
    pipe.save_pretrained(tmp_path / "r" / "sd16", variant="fp16")
    assert list((tmp_path / "r" / "sd16" / "unet").glob("*.fp16.safetensors"))
    recipe = write_recipe(tmp_path / "r", model="./sd16", n_captions=2, size=2)
    base = recipe.read_text()
    recipe.write_text(base.replace("  dtype: float32\n", "  dtype: float32\n  variant: fp16\n  scheduler: euler\n"
                                                         "  compile: true\n"))
    worker = ShardWorker(load_recipe(recipe), "cpu")
    assert isinstance(worker.generator.pipe.scheduler, diffusers.EulerDiscreteScheduler)
    assert isinstance(worker.generator.pipe.unet, torch._dynamo.eval_frame.OptimizedModule)
    recipe.write_text(base)  # no variant: the folder has no default weights to load
    from synthvlm_builder.models.preflight import ModelUnavailable
    with pytest.raises(ModelUnavailable, match="no file named"):  # which component fails first varies
        ShardWorker(load_recipe(recipe), "cpu")


def test_bad_device_flag_is_a_clear_error(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=2, size=2)
    for device, words in (("nonsense", "unknown device 'nonsense'"), ("cuda:7", "CUDA is not available"),
                          ("mps", "MPS is not available")):
        proc = cli(recipe, "--output", tmp_path / "out", "--device", device, check=False)
        assert proc.returncode == 2, (device, proc.stderr)
        assert proc.stderr.startswith("error: --device: ") and words in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists(), "a bad device is found before the dir is touched"


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.slow
def test_a_dir_in_use_is_refused_whatever_the_flags(tmp_path):
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=3, shard_size=2)
    out = tmp_path / "out"
    env = {**os.environ, "SYNTHVLM_TEST_SIGNAL": "STOP@1"}  # stops itself, holding the dir's lock
    first = subprocess.Popen([sys.executable, "-m", "synthvlm_builder", str(recipe), "--output", str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not _stopped(first.pid):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        for extra in ((), ("--overwrite",)):
            proc = cli(recipe, "--output", out, *extra, check=False)
            assert proc.returncode == 2 and "another synthvlm-build is running" in proc.stderr, proc.stderr
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before, "the running build's files were touched"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert "resuming: 1 of 2 shards" in cli(recipe, "--output", out).stderr
