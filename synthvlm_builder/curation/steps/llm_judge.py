"""The LLM judge: an OpenAI-compatible chat-completions endpoint answers Yes/No for each caption.

The official `openai` client talks to the endpoint (`base_url`: vLLM, TGI, llama.cpp server or a
hosted API) with its own retries off; retry.py's one policy retries what is transient for it (OPENAI:
429, 5xx, timeouts, dropped connections, a reply without text) with exponential backoff, as it does
for the Hub. At most `max_concurrency` requests are in flight. Answers are cached by (model, prompt,
caption) before the Yes/No reading is applied, so a rerun or resumed build asks nothing twice.

The API key is read from the environment variable the recipe names; it is handed to the client and
nowhere else (never printed, logged, locked or put in an error).
"""
from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Optional

from ...errors import BuildError, InputError
from ...retry import OPENAI, MalformedReply
from ...text import printable
from ..cache import StepCache, cache_key
from ..step import CaptionStep, require

FIELD = "captions.filters.llm_judge"
_SHOWN = 80  # bytes of an unexpected reply shown in the error
_LEADING = re.compile(r"^[\W_]+")


JUDGE_PROMPT = ("Here is a caption of an image:\n\n{caption}\n\nIs this caption highly descriptive of the image"
                " it belongs to? Answer with Yes or No only.")


@dataclass(frozen=True)
class LlmJudgeConfig:
    base_url: str                # an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1
    model: str
    api_key_env: Optional[str] = None  # the NAME of the environment variable holding the key
    prompt: str = JUDGE_PROMPT   # {caption} is replaced by the caption
    yes: str = "Yes"
    max_concurrency: int = 8
    timeout: float = 60.0
    retries: int = 5


def api_key(cfg: LlmJudgeConfig) -> Optional[str]:
    if cfg.api_key_env is None:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise BuildError(f"{FIELD}.api_key_env: the environment variable {cfg.api_key_env} is not set"
                         " (it should hold the endpoint's API key)")
    return key


def client(cfg: LlmJudgeConfig, timeout: float):
    require(("openai",), "llm", FIELD)
    from openai import OpenAI
    # The client insists on a key; local servers (vLLM without --api-key) ignore the placeholder.
    return OpenAI(base_url=cfg.base_url, api_key=api_key(cfg) or "EMPTY", max_retries=0, timeout=timeout)


def check_endpoint(cfg: LlmJudgeConfig) -> None:
    """Preflight: the endpoint answers /models and serves the model (a BuildError, exit 1, if it cannot
    be reached or does not serve it; bad input at base_url, exit 2, if what answers is not such an API)."""
    import openai
    try:
        served = served_models(cfg, client(cfg, min(cfg.timeout, 10.0)).models.with_raw_response.list().content)
    except (openai.APIConnectionError, openai.APITimeoutError) as e:
        raise BuildError(f"{FIELD}: cannot reach the LLM endpoint {cfg.base_url}: {OPENAI.describe(e)}") from None
    except openai.NotFoundError:
        return  # an endpoint without /models (rare): the first request will tell
    except openai.APIStatusError as e:
        raise BuildError(f"{FIELD}: the LLM endpoint {cfg.base_url} refused to list its models:"
                         f" {OPENAI.describe(e)}") from None
    if cfg.model not in served:
        raise BuildError(f"{FIELD}.model: {cfg.base_url} does not serve {cfg.model!r}; it serves: "
                         + (", ".join(served) or "nothing"))


def served_models(cfg: LlmJudgeConfig, body: bytes) -> list[str]:
    """The model ids of a `GET /models` reply, read as the OpenAI API defines it: a JSON object whose
    `data` is a list of objects with an `id`. Anything else (a web UI's HTML page at base_url, a proxy's
    error page, other JSON) means base_url is not an OpenAI-compatible API: bad input, shown as it came."""
    try:
        reply = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        reply, what = None, "not JSON"
    else:
        what = "JSON without a `data` list of models with ids"
    data = reply.get("data") if isinstance(reply, dict) else None
    if isinstance(data, list) and all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        return [m["id"] for m in data]
    shown = body[:_SHOWN].decode("utf-8", errors="replace") + ("..." if len(body) > _SHOWN else "")
    raise InputError(f"{FIELD}.base_url", f"{printable(cfg.base_url)} is not an OpenAI-compatible API: GET"
                     f" {printable(cfg.base_url.rstrip('/'))}/models answered {what}"
                     f" ({len(body):,} bytes: {printable(shown)!s}); point base_url at the API root (often"
                     " ending in /v1), not at a web page")


class LlmJudgeStep(CaptionStep):
    name = "llm_judge"
    summary = "an LLM's Yes/No on each caption"
    order = 300
    legacy = "later"
    Config = LlmJudgeConfig
    # where and how the judge is asked; its model, prompt and yes-word decide the answers
    operational = ("base_url", "api_key_env", "max_concurrency", "timeout", "retries")
    schema = {'description': 'An LLM behind an OpenAI-compatible chat-completions endpoint (vLLM, TGI, llama.cpp '
                             'server, a hosted API) answers the prompt for each caption; the caption is kept when '
                             'the answer starts with yes. Requests run concurrently, transient failures (429, 5xx, '
                             'timeouts) are retried with backoff, and answers are cached by (model, prompt, '
                             'caption). Needs `pip install -e ".[llm]"`. Only model, prompt and yes change the '
                             'data.',
              'type': 'object',
              'additionalProperties': False,
              'required': ['base_url', 'model'],
              'properties': {'base_url': {'description': "The endpoint's base URL, e.g. http://localhost:8000/v1 "
                                                         'for `vllm serve`.',
                                          'type': 'string',
                                          'pattern': '^https?://[^\\s]+$',
                                          'x-error': 'must be an http:// or https:// URL such as '
                                                     'http://localhost:8000/v1'},
                             'model': {'description': 'The model name the endpoint serves (its /v1/models lists '
                                                      'it).',
                                       'type': 'string',
                                       'minLength': 1},
                             'api_key_env': {'description': 'The NAME of the environment variable that holds the '
                                                            'API key (e.g. OPENAI_API_KEY); the key itself never '
                                                            'appears in the recipe, the lock, the card or the '
                                                            'logs. Unset: no key is sent.',
                                             'type': 'string',
                                             'pattern': '^[A-Za-z_][A-Za-z0-9_]*$',
                                             'x-error': 'must be an environment variable name such as '
                                                        'OPENAI_API_KEY (the name, not the key)'},
                             'prompt': {'description': 'The user message; {caption} is replaced by the caption. '
                                                       'Default: a Yes/No question whether the caption is highly '
                                                       "descriptive (the paper's criterion).",
                                        'type': 'string',
                                        'minLength': 1,
                                        'default': 'Here is a caption of an image:\n'
                                                   '\n'
                                                   '{caption}\n'
                                                   '\n'
                                                   'Is this caption highly descriptive of the image it belongs to? '
                                                   'Answer with Yes or No only.'},
                             'yes': {'description': 'The answer that keeps a caption: kept when the reply, '
                                                    'stripped and case-folded, starts with this word.',
                                     'type': 'string',
                                     'minLength': 1,
                                     'default': 'Yes'},
                             'max_concurrency': {'description': 'Requests in flight at once.',
                                                 'type': 'integer',
                                                 'minimum': 1,
                                                 'maximum': 1024,
                                                 'default': 8},
                             'timeout': {'description': 'Seconds to wait for one answer before retrying.',
                                         'type': 'number',
                                         'minimum': 0.1,
                                         'maximum': 3600,
                                         'default': 60},
                             'retries': {'description': 'Retries of a request after a transient failure (429, 5xx, '
                                                        'timeout, dropped connection, malformed reply), with '
                                                        'exponential backoff.',
                                         'type': 'integer',
                                         'minimum': 0,
                                         'maximum': 20,
                                         'default': 5}}}
    rows = scored = ("llm_judge",)

    @classmethod
    def funnel(cls, cfg: LlmJudgeConfig, filters) -> list[tuple[str, str]]:
        return [(cls.name, f"{cfg.yes!r} from {cfg.model} at {cfg.base_url}")]

    @classmethod
    def check(cls, c, value, at, data) -> None:
        if "{caption}" not in value["prompt"]:
            c.bad(at + ("prompt",), "must contain {caption}, where each caption goes")

    @classmethod
    def preflight(cls, cfg: LlmJudgeConfig, filters) -> None:
        check_endpoint(cfg)

    @classmethod
    def from_config(cls, cfg: LlmJudgeConfig, env) -> "LlmJudgeStep":
        return cls(cfg, env.cache_dir)

    def __init__(self, cfg: LlmJudgeConfig, cache_dir=None):
        super().__init__()
        self.cfg = cfg
        self.client = client(cfg, cfg.timeout)
        self.batch_size = max(32, 4 * cfg.max_concurrency)
        self.pool = ThreadPoolExecutor(cfg.max_concurrency, thread_name_prefix="llm-judge")
        self.cache = StepCache("llm_judge", cache_dir)
        self.yes = cfg.yes.casefold()
        self.checked = False  # the endpoint is checked before the first request, not on a cached rerun
        self.usage.update(requests=0, prompt_tokens=0, completion_tokens=0)
        self.usage_lock = threading.Lock()  # requests are answered on the pool's threads

    def ask(self, text: str) -> str:
        def once() -> str:
            reply = self.client.chat.completions.create(
                model=self.cfg.model, temperature=0, max_tokens=16,
                messages=[{"role": "user", "content": self.cfg.prompt.replace("{caption}", text)}])
            self.count_usage(getattr(reply, "usage", None))
            choices = getattr(reply, "choices", None)
            content = choices[0].message.content if choices else None
            if not isinstance(content, str) or not content.strip():
                raise MalformedReply("the reply holds no answer text")
            return content

        try:
            return OPENAI.retry("llm_judge", once, retries=self.cfg.retries)
        except Exception as e:
            tried = f" after {self.cfg.retries + 1} attempts" if OPENAI.transient(e) else ""
            raise BuildError(f"{FIELD}: {self.cfg.base_url} failed{tried}: {OPENAI.describe(e)}") from None

    def count_usage(self, usage) -> None:
        """One request answered, with the tokens its `usage` reports (an endpoint may report none)."""
        with self.usage_lock:
            self.usage["requests"] = self.usage.get("requests", 0) + 1
            for key in ("prompt_tokens", "completion_tokens"):
                value = getattr(usage, key, None)
                if isinstance(value, int):
                    self.usage[key] = self.usage.get(key, 0) + value

    def judge(self, batch):
        keys = [cache_key(self.cfg.model, self.cfg.prompt, c.text) for c in batch]
        answers = self.cache.get_many(keys)
        todo = {k: c.text for k, c in zip(keys, batch) if k not in answers}
        if todo and not self.checked:
            check_endpoint(self.cfg)
            self.checked = True
        futures = {self.pool.submit(self.ask, text): key for key, text in todo.items()}
        fresh, failure = {}, None
        for future in as_completed(futures):
            try:
                fresh[futures[future]] = future.result()
            except BuildError as e:
                failure = failure or e
        self.cache.put_many(fresh)  # what was answered is kept even when another request failed for good
        if failure:
            raise failure
        self.tally("llm_judge", len(fresh), len(batch) - len(fresh))
        answers.update(fresh)
        return [None if self.says_yes(answers[k]) else ("llm_judge", f"answered {answers[k].strip()[:40]!r}")
                for k in keys]

    def says_yes(self, answer: str) -> bool:
        """The reply starts with the `yes` word (after leading punctuation or markup: '**Yes.**')."""
        text = _LEADING.sub("", answer).casefold()
        return text.startswith(self.yes) and not text[len(self.yes):len(self.yes) + 1].isalnum()

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.cache.close()
