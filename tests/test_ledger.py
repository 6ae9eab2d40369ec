"""The cost ledger (execution/ledger.py): a build killed half-way and resumed reports the uninterrupted
build's work plus the work the kill made it redo, counted apart; LLM requests and tokens come from the
endpoint's `usage`; money only from the recipe's `costs:` prices, which change no fingerprint."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from buildutil import cli, write_recipe
from llmserver import LlmServer

JUDGE = """\
  filters:
    llm_judge:
      base_url: {url}
      model: tiny-judge
      max_concurrency: 2
      timeout: 5
"""
COSTS = """\
costs:
  currency: EUR
  device_hour: 3.6
  prompt_tokens_per_million: 1000000
  completion_tokens_per_million: 2000000
"""


def judged_recipe(d, url):
    path = write_recipe(d, n_captions=12, shard_size=2, size=10, extra=COSTS)
    text = path.read_text().replace("      id_column: id\n", "      id_column: id\n" + JUDGE.format(url=url))
    path.write_text(text)
    return path


def ledger(out) -> dict:
    return json.loads((out / "stats.json").read_text())["ledger"]


@pytest.mark.slow
def test_killed_and_resumed_build_adds_up_to_the_uninterrupted_one_plus_redone_work(tmp_path, private_cache,
                                                                                     monkeypatch):
    with LlmServer() as server:
        clean = judged_recipe(tmp_path / "clean", server.base_url)
        cli(clean, "--output", tmp_path / "clean" / "out")
        asked = len(server.requests)
        # the killed build curates again (its own caption cache), as an uninterrupted one would
        cache = tmp_path / "cache2"
        cache.mkdir()
        (cache / "builtin").symlink_to(os.path.realpath(private_cache / "builtin"))
        monkeypatch.setenv("SYNTHVLM_CACHE", str(cache))
        recipe = judged_recipe(tmp_path / "killed", server.base_url)
        out = tmp_path / "killed" / "out"
        killed = subprocess.run([sys.executable, "-m", "synthvlm_builder", str(recipe), "--output", str(out)],
                                capture_output=True, text=True, env={**os.environ, "SYNTHVLM_TEST_SIGNAL": "KILL@2"},
                                timeout=600)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        resumed = cli(recipe, "--output", out)
        assert len(server.requests) == 2 * asked  # the resume asked nothing again
    base, got = ledger(tmp_path / "clean" / "out"), ledger(out)
    assert asked == 12
    assert got["finished"]["images"] == base["finished"]["images"] == 24
    # shard 2 (2 captions x 2 candidates, one batch of 4) was generated, then lost to the kill
    assert got["redone"]["images"] == 4 and got["redone"]["attempts"] == 1
    assert got["redone"]["device_seconds"]["generate"] > 0 == base["redone"]["images"]
    assert got["total"]["images"] == base["total"]["images"] + got["redone"]["images"] == 28
    assert got["total"]["llm"] == base["total"]["llm"] == {"requests": 12, "prompt_tokens": 12,
                                                           "completion_tokens": 12}
    assert set(got["finished"]["device_seconds"]) == set(base["finished"]["device_seconds"]) >= {
        "generate", "encode", "score", "write", "score.clip", "score.ssim", "curation.llm_judge"}
    seconds = got["finished"]["device_seconds"]
    expected = sum(seconds[k] for k in ("generate", "encode", "score", "write", "curation.llm_judge"))
    assert got["total"]["device_seconds"] == pytest.approx(expected + got["redone"]["device_seconds"]["generate"],
                                                           abs=0.01)
    money = got["money"]
    assert money["currency"] == "EUR" and money["llm_prompt_tokens"] == 12 and money["llm_completion_tokens"] == 24
    assert money["device"] == pytest.approx(got["total"]["device_seconds"] / 1000, rel=1e-3)
    assert money["total"] == pytest.approx(36 + money["device"], abs=1e-5)
    assert "redone after interruptions: 4 images" in resumed.stderr and "money: " in resumed.stderr
    card = (out / "README.md").read_text()  # what the data determines: the same as the uninterrupted build's
    assert "24 images were generated for this dataset" in card and "redone" not in card.split("## Cost")[1][:80]
    section = lambda text: text.split("## Cost")[1].split("## ")[0]  # noqa: E731
    assert section(card) == section((tmp_path / "clean" / "out" / "README.md").read_text())


def test_costs_change_no_fingerprint_and_bad_prices_exit_2(tmp_path):
    plain = write_recipe(tmp_path / "a")
    priced = write_recipe(tmp_path / "b", extra=COSTS)
    fp = [json.loads(cli("plan", r, "--json").stdout)["fingerprint"] for r in (plain, priced)]
    assert fp[0] == fp[1]
    for bad, message in (("  device_hour: -1\n", "costs.device_hour: "),
                         ("  currency: US Dollar\n", "costs.currency: must be a currency label"),
                         ("  per_token: 1\n", "costs.per_token: unknown field")):
        path = write_recipe(tmp_path / "c", extra="costs:\n" + bad)
        proc = cli(path, "--output", tmp_path / "c" / "out", check=False)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"{path}:") and message in line, line
        assert not (tmp_path / "c" / "out").exists()


def test_curation_lost_to_a_kill_is_counted_as_redone(tmp_path, private_cache, monkeypatch):
    """Interrupted twice after the LLM judge answered every caption and before the curated captions were
    recorded (SYNTHVLM_TEST_SIGNAL=INT@captions: the signal arrives at that point, in this process; the
    output dir exists beforehand, since a build that fails in a dir it created with no shard finished
    removes its work state, events log included: execution/outdir.py `release`), the caption caches lost
    after the first: the second attempt asked all again, the
    resumed build found every answer cached. An uninterrupted build asks each caption once (1 prompt + 1
    completion token per answer, tests/llmserver.py): the ledger's total is that plus what it reports
    redone, and the answers the resumed build reused count once, as the kept captions' work."""
    with LlmServer() as server:
        recipe = judged_recipe(tmp_path, server.base_url)
        out = tmp_path / "out"
        out.mkdir()
        monkeypatch.setenv("SYNTHVLM_TEST_SIGNAL", "INT@captions")
        asked = []
        for attempt in range(2):
            stopped = cli(recipe, "--output", out, check=False)
            assert stopped.returncode == 130 and "interrupted" in stopped.stderr, stopped.stderr
            asked.append(len(server.requests))
            assert not (out / "stats.json").exists() and not list(out.glob(".synthvlm/builds/*/captions.json"))
            if attempt == 0:
                shutil.rmtree(private_cache / "curation")  # the first attempt's answers are lost with it
        monkeypatch.delenv("SYNTHVLM_TEST_SIGNAL")
        resumed = cli(recipe, "--output", out)  # the second attempt's answers are cached: it asks nothing
        assert len(server.requests) == asked[1] == 2 * asked[0] == 24
    got = ledger(out)
    uninterrupted = {"requests": asked[0], "prompt_tokens": asked[0], "completion_tokens": asked[0]}
    assert got["finished"]["llm"] == uninterrupted
    assert got["redone"]["llm"] == uninterrupted and got["redone"]["attempts"] == 2
    assert got["total"]["llm"] == {k: uninterrupted[k] + got["redone"]["llm"][k] for k in uninterrupted}
    assert got["redone"]["images"] == 0 and got["redone"]["device_seconds"]["curation.llm_judge"] > 0
    assert got["total"]["device_seconds"] == pytest.approx(
        sum(got["finished"]["device_seconds"][k] for k in ("generate", "encode", "score", "write",
                                                            "curation.llm_judge"))
        + sum(got["redone"]["device_seconds"].values()), abs=0.01)
    assert "redone after interruptions: 0 images" in resumed.stderr and "12 LLM requests" in resumed.stderr
    assert "LLM: 24 requests" in resumed.stderr
