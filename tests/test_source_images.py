"""captions.filters.source_image: each caption against its original image (CLIP cosine, BLIP ITM), on a
LLaVA source with real PNG files written by the test (one missing, one not an image) and on a local
`datasets` folder with an Image column; tiny real models (builtin:tiny-clip, builtin:tiny-blip-itm)."""
import io
import json
import shutil
import sqlite3

import numpy as np
import pytest
import torch
from PIL import Image

from buildutil import cli
from curationkit import BROKEN, LLAVA_ROWS, MISSING, png, write_llava_source
from synthvlm_builder.curation.captions import curate
from synthvlm_builder.curation.steps.source_image import SourceClipConfig, SourceImageConfig, SourceItmConfig
from synthvlm_builder.recipe.config import CaptionsConfig, SourceConfig
from synthvlm_builder.recipe.typed import filters_section as FiltersConfig

CLIP_MIN, ITM_MIN = -0.2, 0.5


@pytest.fixture
def llava(tmp_path):
    captions, images = write_llava_source(tmp_path / "src")
    return SourceConfig("llava_json", str(captions), "llava", images=str(images))


def filters(itm_model="builtin:tiny-blip-itm", clip_min=CLIP_MIN, itm_min=ITM_MIN):
    return FiltersConfig(source_image=SourceImageConfig(SourceClipConfig("builtin:tiny-clip", min=clip_min),
                                                        SourceItmConfig(itm_model, min=itm_min, max=1.0)))


def rows(result):
    return {f["name"]: f for f in result.funnel["filters"]}


def stored(cache, step):
    """(caption text, score) pairs in a step's cache, via the values: a score per distinct pair."""
    return sorted(json.loads(v) for (v,) in sqlite3.connect(cache / f"{step}.sqlite").execute("SELECT value FROM entries"))


def reference_clip(texts_images):
    """The cosine by open_clip's own PIL pipeline (ClipBundle.transform), no prefix: what DJ's
    image_text_similarity_filter computes with CLIP (logits_per_text / logit scale)."""
    from synthvlm_builder.models.loading import load_clip
    bundle = load_clip("builtin:tiny-clip", None, "cpu")
    with torch.inference_mode():
        image = torch.stack([bundle.transform(im) for _, im in texts_images])
        a = torch.nn.functional.normalize(bundle.model.encode_image(image).float(), dim=-1)
        b = torch.nn.functional.normalize(bundle.model.encode_text(bundle.tokenizer([t for t, _ in texts_images])).float(),
                                          dim=-1)
    return (a * b).sum(-1).numpy()


def reference_itm(texts_images):
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    from synthvlm_builder.models.builtin import builtin_dir
    folder = builtin_dir("tiny-blip-itm")
    model, processor = BlipForImageTextRetrieval.from_pretrained(folder).eval(), BlipProcessor.from_pretrained(folder)
    scores = []
    for text, image in texts_images:  # one pair at a time, as DJ's operator does
        inputs = processor(images=image, text=text, return_tensors="pt", truncation=True,
                           max_length=model.config.text_config.max_position_embeddings)
        with torch.inference_mode():
            scores.append(float(model(**inputs, use_itm_head=True).itm_score.softmax(-1)[0, 1]))
    return np.array(scores)


def test_scores_missing_images_thresholds_and_cache(llava, tmp_path):
    first = curate(CaptionsConfig((llava,), filters()), cache_dir=tmp_path / "cache")
    r = rows(first)
    missing = r["source_image_missing"]
    assert [e["id"] for e in missing["examples"]] == [f"llava:{MISSING}", f"llava:{BROKEN}"]
    assert "No such file" in missing["examples"][0]["why"] and "unreadable image" in missing["examples"][1]["why"]
    assert "computed" not in missing
    # a repeat dropped by dedupe, 2 without a usable image: the rest scored by CLIP
    scored = [(text, Image.open(tmp_path / "src/images" / f"{rid}.png").convert("RGB"))
              for rid, text in LLAVA_ROWS if rid not in (MISSING, BROKEN, "r12")]
    assert (r["source_image_clip"]["computed"], r["source_image_clip"]["cached"]) == (len(scored), 0) == (12, 0)
    clip = reference_clip(scored)
    np.testing.assert_allclose(stored(tmp_path / "cache", "source_image_clip"), sorted(clip), atol=1e-4)
    assert r["source_image_clip"]["dropped"] == int((clip < CLIP_MIN).sum()) > 0
    survivors = [pair for pair, c in zip(scored, clip) if c >= CLIP_MIN]
    itm = reference_itm(survivors)
    np.testing.assert_allclose(stored(tmp_path / "cache", "source_image_itm"), sorted(itm), atol=1e-4)
    assert (r["source_image_itm"]["computed"], r["source_image_itm"]["dropped"]) == (len(survivors), int((itm < ITM_MIN).sum()))
    assert [c.text for c in first.captions] == [t for (t, _), s in zip(survivors, itm) if s >= ITM_MIN]

    # A rerun reads and hashes the images but scores none of them; a new threshold reuses every score.
    again = curate(CaptionsConfig((llava,), filters(itm_min=0.0)), cache_dir=tmp_path / "cache")
    r = rows(again)
    assert (r["source_image_clip"]["computed"], r["source_image_clip"]["cached"]) == (0, 12)
    assert (r["source_image_itm"]["computed"], r["source_image_itm"]["cached"]) == (0, len(survivors))
    assert len(again.captions) == len(survivors)


def test_a_changed_image_is_scored_again(llava, tmp_path):
    curate(CaptionsConfig((llava,), filters()), cache_dir=tmp_path / "cache")
    (tmp_path / "src/images/r00.png").write_bytes(png(99))
    r = rows(curate(CaptionsConfig((llava,), filters(clip_min=-1)), cache_dir=tmp_path / "cache"))
    assert (r["source_image_clip"]["computed"], r["source_image_clip"]["cached"]) == (1, 11)


def test_itm_model_from_a_local_folder(llava, tmp_path):
    from synthvlm_builder.models.builtin import builtin_dir
    folder = tmp_path / "blip"
    shutil.copytree(builtin_dir("tiny-blip-itm"), folder)
    local = curate(CaptionsConfig((llava,), filters(itm_model=str(folder))), cache_dir=tmp_path / "a")
    builtin = curate(CaptionsConfig((llava,), filters()), cache_dir=tmp_path / "b")
    assert [c.id for c in local.captions] == [c.id for c in builtin.captions]
    assert stored(tmp_path / "a", "source_image_itm") == stored(tmp_path / "b", "source_image_itm")


def test_hf_dataset_image_column(tmp_path):
    import datasets
    folder = tmp_path / "ds"
    ds = datasets.Dataset.from_dict(
        {"caption": ["A cat sleeping on a sunny windowsill.", "A blue car parked in front of a pink house.",
                     "A lighthouse on a rocky coast."],
         "image": [{"bytes": png(1), "path": None}, None, {"bytes": png(2), "path": None}]},
        features=datasets.Features({"caption": datasets.Value("string"), "image": datasets.Image()}))
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    src = SourceConfig("hf_dataset", str(folder), "web", image_column="image")
    result = curate(CaptionsConfig((src,), filters(clip_min=-1, itm_min=0)), cache_dir=tmp_path / "cache")
    r = rows(result)
    assert [e["id"] for e in r["source_image_missing"]["examples"]] == ["web:1"]
    assert r["source_image_clip"]["computed"] == 2 and [c.id for c in result.captions] == ["web:0", "web:2"]
    expected = reference_clip([(t, Image.open(io.BytesIO(png(i))).convert("RGB"))
                               for i, t in ((1, ds[0]["caption"]), (2, ds[2]["caption"]))])
    np.testing.assert_allclose(stored(tmp_path / "cache", "source_image_clip"), sorted(expected), atol=1e-4)


RECIPE = """\
name: images
version: 0.1.0
captions:
  sources:
    - type: llava_json
      path: src/captions.json
      images: src/images
    - type: jsonl
      path: caps.jsonl
  filters:
    source_image:
      clip: {model: builtin:tiny-clip, min: 0.1}
      itm: {model: builtin:tiny-blip-itm}
generate:
  model: builtin:tiny-sd
score:
  clip:
    model: builtin:tiny-clip
select:
  size: 1
  allow_fewer: true
"""


def test_recipe_checks(tmp_path):
    write_llava_source(tmp_path / "src")
    (tmp_path / "caps.jsonl").write_text('{"caption": "x"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("      path: caps.jsonl\n", "      path: caps.jsonl\n      images: src/images\n")
                      .replace("images: src/images\n    - type: jsonl", "images: src/nope\n    - type: jsonl"))
    err = cli("validate", recipe, check=False).stderr.splitlines()
    assert f"{recipe}:10:7: captions.sources[1].images: is not used by jsonl sources" in err
    assert any(e.startswith(f"{recipe}:8:7: captions.sources[1]: captions.filters.source_image needs each caption's"
                            " original image") for e in err)
    assert f"{recipe}:14:12: captions.filters.source_image.itm: set min, max or both: without a bound it keeps" \
           " everything" in err


def test_a_missing_image_folder_stops_captions_and_build_before_work(tmp_path):
    write_llava_source(tmp_path / "src")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("    - type: jsonl\n      path: caps.jsonl\n", "")
                      .replace("images: src/images", "images: src/nope").replace("itm}", "itm, min: 0.5}"))
    assert cli("validate", recipe).returncode == 0  # it may be unpacked later, as an hf:// file is fetched later
    for args in (("captions", recipe), (recipe, "--output", tmp_path / "out")):
        proc = cli(*args, check=False)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
            f"{recipe}:7:15: captions.sources[0].images: image folder not found: {tmp_path / 'src/nope'}")
    assert not (tmp_path / "out").exists()


def test_the_build_preflight_checks_the_itm_model(tmp_path):
    write_llava_source(tmp_path / "src")
    (tmp_path / "r.yaml").write_text(RECIPE.replace("    - type: jsonl\n      path: caps.jsonl\n", "")
                                     .replace("builtin:tiny-blip-itm}", "org/blip-itm, min: 0.5}"))
    proc = cli(tmp_path / "r.yaml", "--output", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: captions.filters.source_image: cannot load BLIP model 'org/blip-itm'")
    assert not (tmp_path / "out").exists()  # refused before the output dir was touched
