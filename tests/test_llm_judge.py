"""captions.filters.llm_judge against an OpenAI-compatible server on 127.0.0.1 (tests/llmserver.py): it
answers Yes iff the caption has >= 6 words, counts requests and the most in flight, and injects
429s, 500s, timeouts and malformed replies."""
import json
import re

import pytest

from buildutil import cli
from llmserver import LlmServer, rule

pytest.importorskip("openai")

CAPTIONS = [f"A photo number {i} of a red bicycle" if i % 3 else f"Bicycle {i}" for i in range(24)]

RECIPE = """\
name: judged
version: 0.1.0
captions:
  sources:
    - type: text
      path: caps.txt
  filters:
    llm_judge:
      base_url: {url}
      model: tiny-judge
      max_concurrency: 3
      timeout: 0.5
      retries: {retries}
{extra}generate:
  model: builtin:tiny-sd
  steps: 2
  resolution: [64, 64]
  dtype: float32
score:
  clip:
    model: builtin:tiny-clip
select:
  size: 1
  allow_fewer: true
execution:
  device: cpu
"""


def recipe(tmp_path, url, captions=CAPTIONS, retries=3, extra=""):
    (tmp_path / "caps.txt").write_text("\n".join(captions) + "\n")
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(url=url, retries=retries, extra=extra))
    return path


def judge_row(stdout: str) -> dict:
    return next(f for f in json.loads(stdout)["funnel"]["filters"] if f["name"] == "llm_judge")


def test_answers_concurrency_bound_and_no_request_twice(tmp_path, private_cache):
    with LlmServer(delay=0.05) as server:
        r = recipe(tmp_path, server.base_url)
        first = cli("captions", r, "--json")
        row = judge_row(first.stdout)
        assert len(server.requests) == len(CAPTIONS) and sorted(server.requests) == sorted(CAPTIONS)
        assert server.max_in_flight == 3  # the bound, reached
        kept = [c["text"] for c in json.loads(first.stdout)["captions"]]
        assert kept == [c for c in CAPTIONS if rule(c) == "Yes"]  # in source order
        assert (row["dropped"], row["computed"], row["cached"]) == (8, 24, 0)
        assert row["examples"][0] == {"id": "caps:0", "text": "Bicycle 0", "why": "answered 'No'"}
        again = cli("captions", r, "--json")
        assert len(server.requests) == len(CAPTIONS)  # nothing asked twice
        assert (judge_row(again.stdout)["computed"], judge_row(again.stdout)["cached"]) == (0, 24)
        assert json.loads(again.stdout)["captions"] == json.loads(first.stdout)["captions"]
        text = cli("captions", r).stdout
        assert "llm_judge: 8 dropped (0 computed, 24 cached)" in text and "(answered 'No')" in text


def test_transient_failures_are_retried(tmp_path, private_cache):
    faults = {"number 1 ": ["429", "500"], "number 2 ": ["malformed", "garbage"], "number 4 ": ["timeout"]}
    with LlmServer(faults=faults, timeout_sleep=1.5) as server:
        proc = cli("captions", recipe(tmp_path, server.base_url, CAPTIONS[:6]), "--json")
        counts = {c: server.requests.count(c) for c in CAPTIONS[:6]}
        assert counts == {CAPTIONS[0]: 1, CAPTIONS[1]: 3, CAPTIONS[2]: 3, CAPTIONS[3]: 1, CAPTIONS[4]: 2,
                          CAPTIONS[5]: 1}
        assert [c["text"] for c in json.loads(proc.stdout)["captions"]] == [CAPTIONS[i] for i in (1, 2, 4, 5)]
        for line in ("llm_judge: HTTP 429; retry 1/3", "llm_judge: HTTP 500; retry 2/3", "MalformedReply",
                     "APITimeoutError"):
            assert line in proc.stderr


def test_retries_used_up_fail_with_exit_1_and_keep_what_was_answered(tmp_path, private_cache):
    with LlmServer(faults={"number 2 ": ["503"] * 3}) as server:
        r = recipe(tmp_path, server.base_url, CAPTIONS[:6], retries=2)
        proc = cli("captions", r, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.splitlines()[-1] == (f"error: captions.filters.llm_judge: {server.base_url} failed after"
                                                " 3 attempts: HTTP 503")
        asked = len(server.requests)
        assert asked == 5 + 3  # the other five answered once, the failing one three times
        again = cli("captions", r, "--json")  # the server has no faults left: only the failed caption is asked
        assert len(server.requests) == asked + 1
        assert (judge_row(again.stdout)["computed"], judge_row(again.stdout)["cached"]) == (1, 5)


def test_unreachable_endpoint_fails_the_build_before_any_image(tmp_path, private_cache):
    with LlmServer() as server:
        url = server.base_url  # a port that was just served, now closed
    r = recipe(tmp_path, url)
    proc = cli(r, "--output", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: captions.filters.llm_judge: cannot reach the LLM endpoint {url}: APIConnectionError (Connection error.)"]
    assert not (tmp_path / "out").exists()  # no shard, no work dir: refused before the output dir was touched


def test_the_key_comes_from_the_named_variable_and_is_never_shown(tmp_path, private_cache, monkeypatch):
    key = "sk-test-0123456789abcdef"
    with LlmServer(api_key=key) as server:
        r = recipe(tmp_path, server.base_url, CAPTIONS[:3], extra="      api_key_env: JUDGE_KEY\n")
        missing = cli("captions", r, check=False)
        assert missing.returncode == 1 and missing.stderr.strip() == (
            "error: captions.filters.llm_judge.api_key_env: the environment variable JUDGE_KEY is not set (it should"
            " hold the endpoint's API key)")
        monkeypatch.setenv("JUDGE_KEY", "sk-wrong")
        wrong = cli("captions", r, check=False)
        assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr and "sk-wrong" not in wrong.stderr
        monkeypatch.setenv("JUDGE_KEY", key)
        ok = cli("captions", r)
        assert f"Bearer {key}" in server.auth_headers
        assert key not in ok.stdout + ok.stderr


def test_a_model_the_endpoint_does_not_serve(tmp_path, private_cache):
    with LlmServer(model="other-model") as server:
        proc = cli("captions", recipe(tmp_path, server.base_url, CAPTIONS[:2]), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: captions.filters.llm_judge.model: {server.base_url} does not serve"
                                   " 'tiny-judge'; it serves: other-model")


def test_prompt_and_yes_word(tmp_path, private_cache):
    prompt = "Caption: {caption}\nIs it good? Answer Yes or No."
    extra = f"      prompt: {json.dumps(prompt)}\n      yes: 'no'\n"  # keep the ones it says no to
    with LlmServer(template=prompt) as server:
        proc = cli("captions", recipe(tmp_path, server.base_url, CAPTIONS[:6], extra=extra), "--json")
    assert [c["text"] for c in json.loads(proc.stdout)["captions"]] == [CAPTIONS[0], CAPTIONS[3]]
    r = recipe(tmp_path, "http://127.0.0.1:9/v1", extra="      prompt: Is it good?\n")
    assert f"{r}:14:15: captions.filters.llm_judge.prompt: must contain {{caption}}" in cli("validate", r,
                                                                                           check=False).stderr


@pytest.mark.parametrize("answer,kept", [("Yes", True), ("yes.", True), ("**Yes**, it is.", True), (" YES", True),
                                         ("No", False), ("Yesterday", False), ("", False), ("I think yes", False)])
def test_reading_the_answer(answer, kept, tmp_path):
    from synthvlm_builder.curation.steps.llm_judge import LlmJudgeConfig, LlmJudgeStep
    step = LlmJudgeStep(LlmJudgeConfig("http://127.0.0.1:9/v1", "m"), cache_dir=tmp_path)
    try:
        assert step.says_yes(answer) is kept
    finally:
        step.close()


def test_a_slow_caption_stage_shows_its_progress(tmp_path, private_cache):
    """Past a second, the caption stage draws a bar of the captions that came through (a quick stage, like the
    error cases above, writes nothing but its result)."""
    with LlmServer(delay=0.25) as server:  # 24 captions, 3 at a time: about 2 s
        proc = cli("captions", recipe(tmp_path, server.base_url), "--json")
    bar = proc.stderr.replace("\r", "\n")
    assert re.search(r"^captions: 16 captions \[", bar, re.M), proc.stderr
