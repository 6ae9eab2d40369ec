"""captions.filters.perplexity: Data-Juicer's KenLM perplexity, with a SentencePiece model trained in
the test and a bigram ARPA model written by hand (tests/curationkit.py works the values out)."""
import json
import subprocess
import sys
import textwrap

import pytest

from buildutil import cli
from curationkit import ARPA, PERPLEXITIES, write_perplexity_models
from synthvlm_builder.curation.captions import curate
from synthvlm_builder.curation.steps.perplexity import PerplexityConfig
from synthvlm_builder.recipe.config import CaptionsConfig, SourceConfig
from synthvlm_builder.recipe.typed import filters_section as FiltersConfig

pytest.importorskip("kenlm")
pytest.importorskip("sentencepiece")


@pytest.fixture
def models(tmp_path):
    return write_perplexity_models(tmp_path / "lm")


def test_perplexity_matches_the_hand_computed_values(models):
    from synthvlm_builder.curation.steps.perplexity import PerplexityModel
    model = PerplexityModel(*models)
    assert {text: model.perplexity(text) for text in PERPLEXITIES} == PERPLEXITIES
    assert model.perplexity("") == 0.0  # DJ: no line, no length


def source(tmp_path, texts):
    path = tmp_path / "caps.jsonl"
    path.write_text("".join(json.dumps({"caption": t}) + "\n" for t in texts))
    return SourceConfig("jsonl", str(path), "caps")


def test_threshold_drops_what_it_should_and_a_rerun_computes_nothing(models, tmp_path):
    cfg = CaptionsConfig((source(tmp_path, list(PERPLEXITIES)),),
                         FiltersConfig(perplexity=PerplexityConfig(str(models[0]), str(models[1]), max=5)))
    first = curate(cfg, cache_dir=tmp_path / "cache")
    assert [c.text for c in first.captions] == ["the cat sat", "the"]  # 3.2 and 3.5 <= 5; 10.0 and 10.6 not
    row = next(f for f in first.funnel["filters"] if f["name"] == "perplexity")
    assert (row["dropped"], row["computed"], row["cached"]) == (2, 4, 0)
    assert [e["why"] for e in row["examples"]] == ["perplexity 10.0", "perplexity 10.6"]
    # A new threshold is applied to the cached values: nothing is computed again.
    looser = CaptionsConfig(cfg.sources, FiltersConfig(perplexity=PerplexityConfig(str(models[0]), str(models[1]),
                                                                                      max=10.0)))
    again = curate(looser, cache_dir=tmp_path / "cache")
    row = next(f for f in again.funnel["filters"] if f["name"] == "perplexity")
    assert [c.text for c in again.captions] == ["the cat sat", "sat the dog", "the"]  # inclusive, as DJ
    assert (row["computed"], row["cached"]) == (0, 4)


def test_other_model_content_is_another_cache_entry(models, tmp_path):
    cfg = CaptionsConfig((source(tmp_path, ["the cat sat"]),),
                         FiltersConfig(perplexity=PerplexityConfig(str(models[0]), str(models[1]), max=5)))
    curate(cfg, cache_dir=tmp_path / "cache")
    models[0].write_text(ARPA.replace("-0.1\t\u2581the \u2581cat", "-0.3\t\u2581the \u2581cat"), encoding="utf-8")
    result = curate(cfg, cache_dir=tmp_path / "cache")  # same path, new content: computed anew
    row = next(f for f in result.funnel["filters"] if f["name"] == "perplexity")
    assert (row["computed"], row["cached"]) == (1, 0)
    assert result.captions[0].text == "the cat sat"  # 10^(2.2/4) = 3.5


RECIPE = """\
name: ppl
version: 0.1.0
captions:
  sources:
    - type: text
      path: caps.txt
  filters:
    perplexity:
      model: {model}
      tokenizer: {tokenizer}
      max: 5
generate:
  model: builtin:tiny-sd
score:
  clip:
    model: builtin:tiny-clip
select:
  size: 1
  allow_fewer: true
"""


def test_recipe_paths_resolve_against_the_recipe_and_missing_files_are_located(models, tmp_path):
    (tmp_path / "caps.txt").write_text("the cat sat\nsat the dog\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model="lm/tiny.arpa", tokenizer="lm/tiny.sp.model"))
    out = cli("captions", recipe, "--json", cwd=tmp_path.parent)
    funnel = json.loads(out.stdout)["funnel"]
    assert funnel["kept"] == 1 and funnel["filters"][-1]["name"] == "perplexity"
    recipe.write_text(RECIPE.format(model="lm/nope.arpa", tokenizer="hf://org"))
    bad = cli("validate", recipe, check=False)
    assert bad.returncode == 2
    assert f"{recipe}:9:14: captions.filters.perplexity.model: model file not found" in bad.stderr
    assert f"{recipe}:10:18: captions.filters.perplexity.tokenizer: hf:// model files must look like" in bad.stderr


def test_an_uncached_hub_file_offline_fails_before_reading_with_exit_1(models, tmp_path):
    (tmp_path / "caps.txt").write_text("the cat sat\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model="hf://org/kenlm/wikipedia/en.arpa.bin", tokenizer="lm/tiny.sp.model"))
    proc = cli("captions", recipe, check=False)  # the tests run with HF_HUB_OFFLINE=1
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: captions.filters.perplexity: cannot load hf://org/kenlm/wikipedia/en.arpa.bin")
    assert "offline" in proc.stderr


def test_a_missing_extra_names_it(models, tmp_path, monkeypatch):
    (tmp_path / "caps.txt").write_text("the cat sat\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model="lm/tiny.arpa", tokenizer="lm/tiny.sp.model"))
    monkeypatch.setitem(sys.modules, "kenlm", None)  # what `import kenlm` meets when it is not installed
    proc = cli("captions", recipe, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: captions.filters.perplexity needs the 'kenlm' package: pip install -e"
                                   " \".[perplexity]\" (or pip install 'synthvlm-builder[perplexity]')")


UPLOAD = textwrap.dedent("""
    import sys
    from huggingface_hub import CommitOperationAdd, HfApi
    api = HfApi()
    api.create_repo("org/kenlm", private=True)
    api.create_commit("org/kenlm", [CommitOperationAdd("wikipedia/tiny.arpa", sys.argv[1]),
                                    CommitOperationAdd("wikipedia/tiny.sp.model", sys.argv[2])],
                      commit_message="tiny models")
""")


def test_hub_files_download_into_the_cache(models, tmp_path, hub_env):
    subprocess.run([sys.executable, "-c", UPLOAD, *map(str, models)], env=hub_env, check=True)
    (tmp_path / "caps.txt").write_text("the cat sat\nsat the dog\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model="hf://org/kenlm/wikipedia/tiny.arpa",
                                    tokenizer="hf://org/kenlm/wikipedia/tiny.sp.model"))
    out = cli("captions", recipe, "--json", env={**hub_env, "SYNTHVLM_CACHE": str(tmp_path / "cache")})
    funnel = json.loads(out.stdout)["funnel"]
    assert funnel["kept"] == 1 and funnel["filters"][-1]["dropped"] == 1
    cached = list((tmp_path / "hf_client").rglob("tiny.arpa"))
    assert cached and "snapshots" in str(cached[0])  # in the Hugging Face cache, like every model
