"""Issue 21, items 7, 8, 15 and 17: models and endpoints the build reads, checked before any work.

- 7: captions.filters.max_tokens must fit every text encoder that reads the caption (the generator's,
  the scoring CLIP's with its prefix), at validate where configs are at hand, else at the preflight;
  without max_tokens the build and the card say what gets cut.
- 8: the lock, the card and `plan` name a model's weights by the digest of every file (a deleted or
  replaced unet/ changes it), the same digest the content identity and `verify` use.
- 15: an LLM judge base_url whose /v1/models is not OpenAI's model list is bad input at base_url.
- 17: an incomplete pipeline folder, a broken classifier or CLIP config, and an aesthetic head that
  does not fit its CLIP stop the build at the preflight (exit 2 at the field), before the output dir.
"""
import json
import shutil

import pytest

from buildutil import cli, write_recipe
from llmserver import LlmServer
from synthvlm_builder.models import builtin
from synthvlm_builder.models.digests import tree_digest

FILTERS_AT = "      id_column: id\n"


def with_filters(recipe, filters: str):
    """Insert `filters` (YAML under captions.filters) into a buildutil recipe."""
    recipe.write_text(recipe.read_text().replace(FILTERS_AT, FILTERS_AT + "  filters:\n" + filters))
    return recipe


def refused(proc, recipe, field: str, *words: str) -> None:
    """Exit 2, one located line at `field`, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"{recipe}:") and f": {field}: " in lines[0], lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])


def local_pipeline(d, name="sd", source="tiny-sd"):
    shutil.copytree(builtin.builtin_dir(source), d / name)
    return d / name


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build of a local pipeline folder, with no max_tokens."""
    root = tmp_path_factory.mktemp("edges-models")
    local_pipeline(root / "r")
    recipe = write_recipe(root / "r", model="./sd", n_captions=4, size=4, shard_size=4)
    proc = cli(recipe, "--output", root / "out")
    return root, recipe, proc


# --- item 8: the weights are named by the digest of every file -------------------------------------

def test_lock_card_and_plan_name_the_whole_folder(built, tmp_path):
    root, recipe, _ = built
    lock = json.loads((root / "out" / "recipe.lock.json").read_text())
    digest = "sha256:" + tree_digest(root / "r" / "sd")
    gen = lock["models"]["generate"]
    assert gen == {"model": "sd", "revision": None, "weights": digest} and lock["inputs"]["generate.model"] == digest
    assert lock["models"]["clip"]["weights"] == lock["inputs"]["score.clip"]
    assert f"- **Generator:** `sd`, weights `{digest}`" in (root / "out" / "README.md").read_text()
    assert json.loads(cli("plan", recipe, "--json").stdout)["content"]["generate.model"] == digest
    assert f"content      generate.model: {digest}" in cli("plan", recipe).stdout

    # Another unet/ (one byte of its weights changed, or the folder gone): another name everywhere.
    copy = tmp_path / "r"
    shutil.copytree(root / "r", copy)
    weights = copy / "sd" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    changed = json.loads(cli("plan", copy / recipe.name, "--json").stdout)["content"]["generate.model"]
    assert changed == "sha256:" + tree_digest(copy / "sd") != digest
    shutil.rmtree(copy / "sd" / "unet")
    gone = json.loads(cli("plan", copy / recipe.name, "--json").stdout)["content"]["generate.model"]
    assert gone not in (digest, changed)


# --- item 17: what the preflight opens of a local folder -------------------------------------------

def _drop_unet(sd):
    shutil.rmtree(sd / "unet")


def _drop_unet_weights(sd):
    (sd / "unet" / "diffusion_pytorch_model.safetensors").unlink()


def _empty_vae_weights(sd):
    (sd / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"")


def _bad_unet_config(sd):
    (sd / "unet" / "config.json").write_text("{'not': json")


def _drop_tokenizer_files(sd):
    for f in (sd / "tokenizer").iterdir():
        f.unlink()


def _bad_index(sd):
    (sd / "model_index.json").write_text("<html>")


@pytest.mark.parametrize("damage, words", [
    (_drop_unet, "unet/ is missing"),
    (_drop_unet_weights, "unet/ has no weights file"),
    (_empty_vae_weights, "vae/ has no weights file"),
    (_bad_unet_config, "unet config: "),
    (_drop_tokenizer_files, "tokenizer/ has none of tokenizer_config.json"),
    (_bad_index, "model_index.json is not JSON"),
])
def test_an_incomplete_pipeline_folder_is_refused_before_the_output_dir(tmp_path, damage, words):
    damage(local_pipeline(tmp_path / "r"))
    recipe = write_recipe(tmp_path / "r", model="./sd", n_captions=4, size=4)
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    refused(proc, recipe, "generate.model", words)
    assert not (tmp_path / "out").exists(), "refused before the output dir (and any caption) is touched"


def _bad_json(folder):
    (folder / "config.json").write_text("{not json")


def _list_json(folder):
    (folder / "config.json").write_text("[1, 2]")


def _bad_labels(folder):
    (folder / "config.json").write_text(json.dumps({"id2label": ["normal", "nsfw"]}))


def _no_weights(folder):
    (folder / "model.safetensors").unlink()


def _bad_processor(folder):
    (folder / "preprocessor_config.json").write_text("")


def _no_processor(folder):
    (folder / "preprocessor_config.json").unlink()


@pytest.mark.parametrize("damage, words", [
    (_bad_json, "config.json is not JSON"), (_list_json, "holds a JSON list, not an object"),
    (_bad_labels, "id2label is not a mapping"), (_no_weights, "has no weights file"),
    (_bad_processor, "preprocessor_config.json is not JSON"), (_no_processor, "has no preprocessor_config.json"),
])
def test_a_broken_screen_model_is_bad_input_at_its_field(tmp_path, damage, words):
    folder = tmp_path / "r" / "nsfw"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "normal", "1": "nsfw"}}))
    (folder / "preprocessor_config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    damage(folder)
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=4, extra="screen:\n  nsfw: {model: nsfw, max: 0.5}\n")
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    refused(proc, recipe, "screen.nsfw.model", words)
    assert not (tmp_path / "out").exists()


def test_a_broken_local_blip_folder_is_bad_input_at_its_field(tmp_path):
    blip = tmp_path / "r" / "blip"
    shutil.copytree(builtin.builtin_dir("tiny-blip-itm"), blip)
    (blip / "processor_config.json").write_text("{'image_processor':")
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=4)
    (tmp_path / "r" / "caps.json").write_text(json.dumps([{"id": "a", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "A cat on a mat."}]}]))
    (tmp_path / "r" / "imgs").mkdir()
    recipe.write_text(recipe.read_text().replace("    - type: jsonl\n      path: caps.jsonl\n" + FILTERS_AT,
                                                 "    - type: llava_json\n      path: caps.json\n      images: imgs\n"
                                                 "  filters:\n    source_image:\n      itm: {model: blip, min: 0.5}\n"))
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    refused(proc, recipe, "captions.filters.source_image.itm.model", "processor_config.json is not JSON")
    assert not (tmp_path / "out").exists()


def test_a_broken_local_clip_config_is_bad_input_at_its_field(tmp_path):
    clip = tmp_path / "r" / "clip"
    shutil.copytree(builtin.builtin_dir("shapes-clip"), clip)
    (clip / "open_clip_config.json").write_bytes(b"\xff\xfe not json")
    recipe = write_recipe(tmp_path / "r", clip="local-dir:clip", n_captions=4, size=4)
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    refused(proc, recipe, "score.clip.model", "open_clip_config.json is not JSON")
    assert not (tmp_path / "out").exists()


AESTHETIC = "  aesthetic:\n    model: head.{ext}\n    clip: {{model: \"builtin:tiny-clip\"}}\n"


@pytest.mark.parametrize("ext", ["pth", "safetensors"])
def test_an_aesthetic_head_that_does_not_fit_its_clip(tmp_path, ext):
    import torch
    from safetensors.torch import save_file

    from synthvlm_builder.models.screens import AestheticHead
    head = {k: v.contiguous() for k, v in AestheticHead(16).state_dict().items()}  # tiny-clip embeds in 32
    recipe = write_recipe(tmp_path / "r", n_captions=4, size=4)
    save_file(head, tmp_path / "r" / "head.safetensors") if ext == "safetensors" else \
        torch.save(head, tmp_path / "r" / "head.pth")
    recipe.write_text(recipe.read_text().replace("    size: 32\n", "    size: 32\n" + AESTHETIC.format(ext=ext)))
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    refused(proc, recipe, "score.aesthetic.model", "takes 16-dimensional CLIP image embeddings",
            "builtin:tiny-clip (score.aesthetic.clip.model) makes 32-dimensional ones")
    assert not (tmp_path / "out").exists()
    (tmp_path / "r" / f"head.{ext}").write_bytes(b"PK\x03\x04 not a state dict")
    proc = cli(recipe, "--output", tmp_path / "out", check=False)
    refused(proc, recipe, "score.aesthetic.model", "not")
    assert not (tmp_path / "out").exists()


# --- item 7: max_tokens fits every text encoder ----------------------------------------------------

def shapes_recipe(d, max_tokens: int, prefix: str = "", model: str = "builtin:shapes-sd",
                  clip: str = "builtin:shapes-clip"):
    recipe = write_recipe(d, model=model, clip=clip, n_captions=4, size=4)
    text = recipe.read_text().replace(f"    model: {clip}\n", f"    model: {clip}\n    prefix: {prefix!r}\n")
    recipe.write_text(text)
    return with_filters(recipe, f"    max_tokens: {max_tokens}\n")


def test_max_tokens_above_a_context_fails_validate_naming_both_numbers(tmp_path):
    recipe = shapes_recipe(tmp_path / "a", 60)
    refused(cli("validate", recipe, check=False), recipe, "captions.filters.max_tokens",
            "60 is above the 24-token context of builtin:shapes-sd's text encoder (generate.model)")
    assert cli("validate", shapes_recipe(tmp_path / "b", 24)).returncode == 0  # exactly the context fits

    sd = local_pipeline(tmp_path / "c", source="shapes-sd")  # a local folder: its own tokenizer config
    config = json.loads((sd / "tokenizer" / "tokenizer_config.json").read_text())
    (sd / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 16}))
    recipe = shapes_recipe(tmp_path / "c", 20, model="./sd")
    refused(cli("validate", recipe, check=False), recipe, "captions.filters.max_tokens",
            "20 is above the 16-token context of ./sd's text encoder (generate.model)", "set it to 16 or less")

    # A prefix is not refused: it pushes a caption past the CLIP's context only when scoring (see below).
    assert cli("validate", shapes_recipe(tmp_path / "d", 24, prefix="a red circle ")).returncode == 0
    clip = tmp_path / "e" / "clip"
    shutil.copytree(builtin.builtin_dir("shapes-clip"), clip)
    config = json.loads((clip / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"]["context_length"] = 20
    (clip / "open_clip_config.json").write_text(json.dumps(config))
    recipe = shapes_recipe(tmp_path / "e", 22, clip="local-dir:clip")
    refused(cli("validate", recipe, check=False), recipe, "captions.filters.max_tokens",
            "22 is above the 20-token context of local-dir:clip's text encoder (score.clip.model)")

    recipe = with_filters(write_recipe(tmp_path / "f", model="builtin:tiny-sdxl"), "    max_tokens: 78\n")
    refused(cli("validate", recipe, check=False), recipe, "captions.filters.max_tokens",
            "78 is above the 77-token context of builtin:tiny-sdxl's text encoder (generate.model)")


def test_a_prefix_that_pushes_captions_past_the_clip_context_is_said_not_refused(tmp_path):
    """The paper scores "A photo depicts " + a caption of up to 77 tokens with CLIP's 77: the build
    counts the prefix in open_clip's own tokenizer and says, on stderr and in the card, what is cut."""
    recipe = with_filters(write_recipe(tmp_path / "r", n_captions=4, size=4), "    max_tokens: 77\n")
    proc = cli(recipe, "--output", tmp_path / "out")
    assert ("note: score.clip.prefix takes 3 of the 77 tokens of builtin:tiny-clip's text encoder: a caption of"
            " more than 74 tokens (max_tokens is 77) is scored on its first 74") in proc.stderr
    card = (tmp_path / "out" / "README.md").read_text()
    assert ("- **Caption length:** at most 77 tokens (`captions.filters.max_tokens`), within every context;"
            " `builtin:tiny-clip`'s 3-token text prefix leaves room for 74, so a longer caption was scored on its"
            " first 74 tokens") in card
    proc = cli("validate", with_filters(write_recipe(tmp_path / "s", n_captions=4, size=4), "    max_tokens: 78\n"),
               check=False)
    assert proc.returncode == 2 and "78 is above the 77-token context of builtin:tiny-sd's text encoder" in proc.stderr


def test_without_max_tokens_the_build_and_the_card_say_what_gets_cut(built):
    root, _, proc = built
    assert ("note: captions.filters.max_tokens is not set: a caption of more than 74 tokens (the 77-token context"
            " of builtin:tiny-clip's text encoder less its 3-token score.clip.prefix, score.clip.model) is cut")\
        in proc.stderr
    assert "set max_tokens to 74 or less" in proc.stderr
    card = (root / "out" / "README.md").read_text()
    assert ("- **Caption length:** not limited (`captions.filters.max_tokens` unset): a caption of more than 74"
            " tokens (the 77-token context of `builtin:tiny-clip`'s text encoder less its 3-token prefix) was cut")\
        in card


# --- item 15: a base_url that is not an OpenAI-compatible API ---------------------------------------

@pytest.mark.parametrize("reply, shown", [
    ("html", "answered not JSON (2"), ("badjson", '{"object": "list", "data": [{"id": "tiny-ju)'),
    ("shape", 'without a `data` list of models with ids (13 bytes: {"data": "x"})'), ("noid", '"name"'),
])
def test_a_judge_endpoint_that_is_not_openais_api(tmp_path, private_cache, reply, shown):
    pytest.importorskip("openai")
    with LlmServer(models_reply=reply) as server:
        recipe = with_filters(write_recipe(tmp_path / "r", n_captions=4, size=4),
                              f"    llm_judge: {{base_url: '{server.base_url}', model: tiny-judge}}\n")
        proc = cli(recipe, "--output", tmp_path / "out", check=False)
        alone = cli("captions", recipe, check=False) if reply == "html" else proc  # the caption stage alone
        assert not server.requests, "no caption was sent"
    for p in (proc, alone):
        refused(p, recipe, "captions.filters.llm_judge.base_url", f"{server.base_url} is not an OpenAI-compatible"
                f" API: GET {server.base_url}/models answered", shown)
    assert not (tmp_path / "out").exists()
    if reply == "html":  # shown as it came, control characters escaped
        assert "<!DOCTYPE html>" in proc.stderr and "\\x1b]0;pwned\\x07" in proc.stderr and "\x1b" not in proc.stderr
