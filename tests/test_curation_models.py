"""The issue's "done when": recipes/curation_tiny.yaml, which uses every caption-curation step, runs
offline against tiny models and the loopback LLM server; its funnel has a row per step, in the order
`plan` lists them, with dropped examples; a second run sends no LLM request and computes no
perplexity or source-image score. Then the same recipe builds, judged by a keyed endpoint."""
import json
from pathlib import Path

import numpy as np
import pytest

from buildutil import ROOT, cli, read_rows, rescore
from llmserver import LlmServer

pytest.importorskip("kenlm")
pytest.importorskip("openai")
pytest.importorskip("jieba")

SHIPPED = ROOT / "recipes" / "curation_tiny.yaml"
FIRST = {"perplexity": (13, 0), "source_image_clip": (6, 0), "source_image_itm": (4, 0), "llm_judge": (3, 0)}


def shipped_recipe(tmp_path, url: str, extra: str = "") -> Path:
    """The shipped recipe, pointed at this test's server; its data paths made absolute."""
    text = SHIPPED.read_text().replace("http://127.0.0.1:8011/v1", url)
    text = text.replace(" data/curation/", f" {ROOT / 'recipes/data/curation'}/")
    text = text.replace("      retries: 3\n", "      retries: 3\n" + extra)
    path = tmp_path / "curation_tiny.yaml"
    path.write_text(text)
    return path


def counts(funnel: dict) -> dict:
    return {f["name"]: (f["computed"], f["cached"]) for f in funnel["filters"] if "computed" in f}


def test_every_step_once_then_nothing_recomputed(tmp_path, private_cache):
    with LlmServer() as server:
        recipe = shipped_recipe(tmp_path, server.base_url)
        first = json.loads(cli("captions", recipe, "--json").stdout)["funnel"]
        plan = json.loads(cli("plan", recipe, "--json").stdout)["curation"]
        assert [f["name"] for f in first["filters"]] == [r["row"] for r in plan]
        dropped = {f["name"]: [e["id"] for e in f["examples"]] for f in first["filters"]}
        for step in ("alnum_ratio", "dedupe", "perplexity", "source_image_missing", "source_image_clip",
                     "source_image_itm", "llm_judge"):
            assert dropped[step], f"{step} dropped nothing"
        assert dropped["source_image_missing"] == ["web:r07", "web:r08"]
        assert dropped["llm_judge"] == ["web:r00"]  # "the cat sat": 3 words, the judge says No
        assert counts(first) == FIRST and len(server.requests) == 3 and first["kept"] == 2

        text = cli("captions", recipe)
        assert len(server.requests) == 3  # not one request more
        again = json.loads(cli("captions", recipe, "--json").stdout)["funnel"]
        assert counts(again) == {name: (0, n) for name, (n, _) in FIRST.items()}
        assert [f["dropped"] for f in again["filters"]] == [f["dropped"] for f in first["filters"]]
        assert "perplexity: 5 dropped (0 computed, 13 cached)" in text.stdout
        assert "llm_judge: 1 dropped (0 computed, 3 cached)" in text.stdout
        assert "      web:r00  \"the cat sat\"  (answered 'No')" in text.stdout
    assert not server.errors


def test_the_build_uses_the_judge_keeps_its_key_secret_and_stores_clipscore_units(tmp_path, private_cache,
                                                                                   monkeypatch):
    key = "sk-secret-abcdef0123456789"
    monkeypatch.setenv("JUDGE_KEY", key)
    with LlmServer(api_key=key) as server:
        recipe = shipped_recipe(tmp_path, server.base_url, "      api_key_env: JUDGE_KEY\n")
        proc = cli(recipe, "--output", tmp_path / "out")
        assert len(server.requests) == 3
        proc2 = cli(recipe, "--output", tmp_path / "out")  # nothing to do: no request either
        assert len(server.requests) == 3
    out = tmp_path / "out"
    stats = json.loads((out / "stats.json").read_text())
    assert counts(stats["captions"]) == FIRST and stats["captions"]["kept"] == 2
    for path in [p for p in out.rglob("*") if p.is_file()]:
        assert key.encode() not in path.read_bytes(), path
    assert key not in proc.stdout + proc.stderr + proc2.stdout + proc2.stderr
    lock = json.loads((out / "recipe.lock.json").read_text())
    assert lock["recipe"]["captions"]["filters"]["llm_judge"]["api_key_env"] == "JUDGE_KEY"
    assert set(lock["inputs"]) >= {"captions.sources[0].images", "captions.filters.perplexity.model",
                                   "captions.filters.perplexity.tokenizer", "captions.filters.source_image.clip",
                                   "captions.filters.source_image.itm"}
    assert "2.5 * max(cosine, 0)" in (out / "README.md").read_text()
    # clip_score is stored as CLIPScore: 2.5 * max(cosine, 0) of what the published image and caption score
    for rid, stored, cosine in rescore(out):
        assert stored == pytest.approx(2.5 * max(cosine, 0.0), abs=3e-4), rid
    rows = read_rows(out, ["clip_score", "ssim", "score"])
    assert all(r["score"] == pytest.approx(r["clip_score"] + 0.5 * r["ssim"], abs=1e-5) for r in rows)


def test_a_changed_judge_model_asks_again_but_a_new_endpoint_does_not(tmp_path, private_cache):
    with LlmServer() as server:
        cli("captions", shipped_recipe(tmp_path, server.base_url))
    with LlmServer() as moved:  # the same model served elsewhere: base_url is not part of the answer's key
        cli("captions", shipped_recipe(tmp_path, moved.base_url))
        assert moved.requests == []
    with LlmServer(model="judge-2") as other:
        text = shipped_recipe(tmp_path, other.base_url).read_text().replace("model: tiny-judge", "model: judge-2")
        (tmp_path / "curation_tiny.yaml").write_text(text)
        cli("captions", tmp_path / "curation_tiny.yaml")
        assert len(other.requests) == 3


@pytest.mark.parametrize("units", ["cosine", "clipscore"])
def test_clip_units(units):
    from synthvlm_builder.stages.score import clip_units
    cos = np.array([-0.2, 0.0, 0.28, 0.4], dtype=np.float32)
    expected = cos if units == "cosine" else np.array([0.0, 0.0, 0.7, 1.0], dtype=np.float32)
    np.testing.assert_allclose(clip_units(cos, units), expected, rtol=1e-6)
    assert clip_units(cos, units).dtype == np.float32
