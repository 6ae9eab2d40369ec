"""Image screens: aesthetic, NSFW and watermark scores and near-duplicate removal, computed on every
generated image before anything is written, with tiny real models saved as the real ones are."""
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from buildutil import cli, read_rows, work_root, write_recipe
from synthvlm_builder import layout

NSFW_MAX, WM_MAX, COSINE = 0.55, 0.55, 0.995


def save_classifier(path, labels):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
    torch.manual_seed(len(labels[1]))
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=2, id2label=dict(enumerate(labels)),
                       label2id={name: i for i, name in enumerate(labels)})
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("screens") / "r"
    save_classifier(root / "models" / "nsfw", ["normal", "nsfw"])
    save_classifier(root / "models" / "wm", ["no_watermark", "watermark"])
    from synthvlm_builder.models.screens import AestheticHead
    torch.manual_seed(0)
    torch.save(AestheticHead(32).state_dict(), root / "models" / "aesthetic.pth")  # as LAION saves its head
    return root


SCREENS = f"""\
screen:
  nsfw: {{model: models/nsfw, max: {NSFW_MAX}}}
  watermark: {{model: models/wm, max: {WM_MAX}}}
  near_duplicates: {{phash_distance: 4, clip_cosine: {COSINE}}}
"""
AESTHETIC = """\
  aesthetic:
    model: models/aesthetic.pth
    clip: {model: "builtin:tiny-clip"}
"""


def screened_recipe(root, name="r.yaml", screens=SCREENS, n_captions=8):
    recipe = write_recipe(root, name=name, n_captions=n_captions, size=16, shard_size=4, image_format="jpeg")
    text = recipe.read_text().replace("    size: 32\n", "    size: 32\n" + AESTHETIC)
    text = text.replace("select:\n  size: 16\n", screens + "select:\n  size: 16\n  allow_fewer: true\n"
                        "  per_caption: all\n")
    recipe.write_text(text)
    return recipe


@pytest.fixture(scope="module")
def screened(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("screened") / "out"
    proc = cli(screened_recipe(models), "--output", out)
    return out, proc


def candidates(out):
    rows = []
    for i, f in enumerate(sorted((work_root(out) / layout.SHARDS).glob("shard-*.parquet"))):
        for r in pq.read_table(f).to_pylist():
            rows.append({**r, "shard": i})
    return rows


def test_every_screen_has_a_column_a_funnel_row_and_holds(screened):
    out, proc = screened
    rows = read_rows(out)
    assert rows and {"aesthetic", "nsfw", "watermark", "phash"} <= set(rows[0])
    assert all(r["nsfw"] <= NSFW_MAX and r["watermark"] <= WM_MAX for r in rows)
    steps = json.loads((out / "stats.json").read_text())["selection"]["steps"]
    names = [s["step"] for s in steps]
    assert names == ["candidates", f"nsfw <= {NSFW_MAX}", f"watermark <= {WM_MAX}",
                     f"near duplicates (pHash distance <= 4 or CLIP cosine >= {COSINE})", "top 16 by score"]
    # the counts follow from the candidates' own columns
    cands = candidates(out)
    alive = [c for c in cands if c["nsfw"] <= NSFW_MAX]
    assert steps[1]["dropped"] == len(cands) - len(alive)
    assert steps[2]["dropped"] == sum(c["watermark"] > WM_MAX for c in alive)
    assert steps[3]["dropped"] > 0, "the tiny random CLIP maps noise images close together: groups must form"
    card = (out / "README.md").read_text()
    assert "| aesthetic |" in card and "| nsfw |" in card and "| caption filter" in card
    assert "nsfw <= 0.55" in card


def test_no_near_duplicates_survive_and_groups_span_shards(screened, tmp_path):
    from synthvlm_builder.models.loading import load_clip
    from synthvlm_builder.models.clip import ClipScorer

    out, _ = screened
    scorer = ClipScorer(load_clip("builtin:tiny-clip", None, "cpu"))
    rows = read_rows(out)
    emb = scorer.image_embeddings(np.stack([decode(r["image"]["bytes"]) for r in rows])).numpy()
    cos = emb @ emb.T
    assert (cos[np.triu_indices(len(rows), 1)] < COSINE).all()
    # the build had near-duplicate pairs across its two shards (the whole build is searched)
    cands = [c for c in candidates(out) if c["nsfw"] <= NSFW_MAX and c["watermark"] <= WM_MAX]
    e = np.stack([np.frombuffer(c["clip_embedding"], np.float16).astype(np.float32) for c in cands])
    pairs = np.argwhere(np.triu(e @ e.T >= COSINE, 1))
    assert any(cands[i]["shard"] != cands[j]["shard"] for i, j in pairs)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_stored_scores_are_what_the_models_say_of_the_published_images(screened, models):
    """Re-scored with transformers and torch directly (not our loaders): the columns are real scores."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from synthvlm_builder.models.loading import load_clip
    from synthvlm_builder.models.clip import ClipScorer
    from synthvlm_builder.models.screens import AestheticHead

    out, _ = screened
    rows = read_rows(out)
    images = np.stack([decode(r["image"]["bytes"]) for r in rows])
    for column, folder, label in (("nsfw", "nsfw", 1), ("watermark", "wm", 1)):
        processor = AutoImageProcessor.from_pretrained(models / "models" / folder)
        model = AutoModelForImageClassification.from_pretrained(models / "models" / folder).eval()
        with torch.no_grad():
            probs = torch.softmax(model(**processor(images=list(images), return_tensors="pt")).logits, -1)[:, label]
        assert np.allclose([r[column] for r in rows], probs.numpy(), atol=1e-4)
    head = AestheticHead.from_state_dict(torch.load(models / "models" / "aesthetic.pth", weights_only=True))
    emb = ClipScorer(load_clip("builtin:tiny-clip", None, "cpu")).image_embeddings(images)
    assert np.allclose([r["aesthetic"] for r in rows], head.score(emb), atol=1e-4)


def test_each_clip_encodes_each_image_once(models, tmp_path):
    from synthvlm_builder.execution.workdir import WorkDir
    from synthvlm_builder.execution.worker import ShardWorker
    from synthvlm_builder.recipe import Caption, load_recipe

    recipe = load_recipe(screened_recipe(models, name="once.yaml"))
    worker = ShardWorker(recipe, "cpu")
    seen = []
    worker.scorer.clip.model.visual.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    work = WorkDir(tmp_path / "w")
    work.prepare({})
    captions = [Caption(f"c:{i}", f"A lighthouse number {i}.", "c") for i in range(3)]
    worker.run(0, captions, work)
    assert sum(seen) == 6, "6 candidates: the CLIPScore model's embedding also feeds the aesthetic head"


def test_a_screen_model_that_cannot_be_had_stops_the_build_first(models, tmp_path):
    import os
    recipe = screened_recipe(models, name="hub.yaml", screens=SCREENS.replace("models/nsfw", "Falconsai/nsfw_image_detection"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = cli(recipe, "--output", tmp_path / "out", env=env, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Falconsai/nsfw_image_detection" in proc.stderr and "nsfw classifier" in proc.stderr
    assert not (tmp_path / "out").exists(), "nothing is written before every model is known to load"


def test_a_label_the_classifier_lacks_is_refused_at_the_field(models, tmp_path):
    recipe = screened_recipe(models, name="label.yaml", screens=SCREENS.replace(
        "model: models/nsfw,", "model: models/nsfw, label: porn,"))
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "screen.nsfw.label: 'porn' is not a label" in proc.stderr
    assert "normal, nsfw" in proc.stderr


def test_phash_finds_re_encoded_and_resized_copies_whatever_the_order():
    from synthvlm_builder.stages import neardup
    from synthvlm_builder.stages.neardup import phashes

    rng = np.random.default_rng(0)
    bases = []
    for _ in range(6):  # coarse random blocks, upsampled: low-frequency structure, as pHash reads
        blocks = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
        bases.append(np.asarray(Image.fromarray(blocks).resize((96, 96), Image.BICUBIC)))
    images, ids = [], []
    for i, base in enumerate(bases):
        images.append(base)
        ids.append(f"b{i}")
        if i < 3:  # a copy through JPEG at quality 70, and one resized down 10% and back
            buf = io.BytesIO()
            Image.fromarray(base).save(buf, format="JPEG", quality=70)
            images.append(decode(buf.getvalue()))
            ids.append(f"b{i}-jpeg")
            small = Image.fromarray(base).resize((86, 86), Image.BICUBIC).resize((96, 96), Image.BICUBIC)
            images.append(np.asarray(small))
            ids.append(f"b{i}-resized")
    codes = neardup.phash_codes(phashes(np.stack(images)))
    pairs = neardup.phash_pairs(codes, 4)
    brute = {(i, j) for i in range(len(codes)) for j in range(i + 1, len(codes))
             if np.unpackbits(codes[i] ^ codes[j]).sum() <= 4}
    assert {tuple(p) for p in pairs.tolist()} == brute  # the multi-index hash misses no pair
    score = np.linspace(0.1, 0.9, len(ids)).astype(np.float32)
    keep, groups = neardup.keep_one_per_group(len(ids), pairs, score, np.array(ids))
    assert groups == 3 and sorted(np.array(ids)[keep]) == sorted(["b0-resized", "b1-resized", "b2-resized",
                                                                   "b3", "b4", "b5"])
    perm = rng.permutation(len(ids))  # another shard layout or executor: the same survivors
    codes2 = codes[perm]
    keep2, _ = neardup.keep_one_per_group(len(ids), neardup.phash_pairs(codes2, 4), score[perm],
                                          np.array(ids)[perm])
    assert sorted(np.array(ids)[perm][keep2]) == sorted(np.array(ids)[keep])
