"""Retrying the calls of a remote service on transient errors: one policy for every client (tenacity does
the looping: a number of retries, an exponential backoff from a first wait up to a longest one, and a
line through reporter.py before each retry), and per client which errors are transient and how an error
is named in a message.

    HUB     huggingface_hub: publish, --push uploads, staged releases (release/). Transient: HTTP 408,
            429 and 5xx gateway errors, transport failures (timeouts, dropped connections).
            SYNTHVLM_PUBLISH_RETRIES retries (5), SYNTHVLM_PUBLISH_RETRY_WAIT first wait (1 s), 8 s at most.
    OPENAI  the openai client of the LLM judge (curation/steps/llm_judge.py; the client's own retries are
            off). Transient: HTTP 408, 429 and any 5xx, connection errors and timeouts, a reply without
            text. The recipe's `retries`, SYNTHVLM_LLM_RETRY_WAIT first wait (1 s), 30 s at most.

A call that changes something remote can pass `landed`, which is asked after each transient failure
whether the call took effect anyway (its response was lost); a non-None answer is returned as the result,
so an operation is never sent twice.
"""
from __future__ import annotations

from typing import Callable, Optional

from . import reporter
from .settings import setting


class Client:
    """A remote service's client as its calls are retried (`retry`, the one policy); a subclass says which
    errors are transient (`transient`) and how an error reads (`describe`)."""

    wait_setting: str             # SYNTHVLM_* variable: seconds before the first retry, doubled each time ...
    base_wait = 1.0               # ... when it is not set
    max_wait: float               # ... up to this
    retries_setting: Optional[str] = None  # SYNTHVLM_* variable: retries after the first attempt ...
    default_retries = 5                    # ... when it is not set and the caller names none

    def transient(self, e: BaseException) -> bool:
        raise NotImplementedError

    def describe(self, e: BaseException) -> str:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

    def retry(self, what: str, call: Callable, retries: Optional[int] = None, landed: Optional[Callable] = None):
        """call() until it succeeds or fails for good (an error that is not transient, or the retries used
        up: the last error is raised); `what` names the call in the lines reported before each retry."""
        from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential
        if retries is None:
            retries = setting(self.retries_setting, self.default_retries) if self.retries_setting else \
                self.default_retries
        wait = setting(self.wait_setting, self.base_wait)

        def attempt():
            try:
                return call()
            except Exception as e:
                if landed is not None and self.transient(e):
                    try:
                        done = landed()
                    except Exception as check_error:
                        if not self.transient(check_error):
                            raise
                        done = None
                    if done is not None:
                        reporter.info(f"{what}: {self.describe(e)}; it had taken effect nonetheless")
                        raise Landed(done) from e
                raise

        def before_sleep(state: RetryCallState) -> None:
            reporter.info(f"{what}: {self.describe(state.outcome.exception())}; retry {state.attempt_number}/"
                          f"{retries} in {state.next_action.sleep:g}s")

        try:
            return Retrying(stop=stop_after_attempt(retries + 1), wait=wait_exponential(multiplier=wait,
                                                                                        max=self.max_wait),
                            retry=retry_if_exception(self.transient), before_sleep=before_sleep, reraise=True)(attempt)
        except Landed as answer:
            return answer.value


class Landed(Exception):
    """Raised inside an attempt when `landed` says a failed call took effect; carries its answer."""

    def __init__(self, value):
        self.value = value


class HubClient(Client):
    statuses = (408, 429, 500, 502, 503, 504)
    wait_setting = "SYNTHVLM_PUBLISH_RETRY_WAIT"
    max_wait = 8.0
    retries_setting = "SYNTHVLM_PUBLISH_RETRIES"

    def transport_errors(self) -> tuple[type, ...]:
        """The client's network errors (huggingface_hub >= 1.0 speaks httpx2, whose errors are not OSErrors)."""
        try:
            import httpx2
            return (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
        except ImportError:
            return (TimeoutError, ConnectionError)

    def transient(self, e: BaseException) -> bool:
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
        if isinstance(e, OfflineModeIsEnabled):
            return False
        if isinstance(e, HfHubHTTPError) and getattr(e, "response", None) is not None:
            return e.response.status_code in self.statuses
        if isinstance(e, LocalEntryNotFoundError) and e.__cause__ is not None:  # hf_hub_download's HEAD failed
            return self.transient(e.__cause__)
        return isinstance(e, self.transport_errors())

    def describe(self, e: BaseException) -> str:
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        server = getattr(e, "server_message", None)
        if status is not None:
            text = str(e).strip()
            detail = (server or (text.splitlines()[0] if text else "")).strip()
            return f"HTTP {status}" + (f" ({detail})" if detail else "")
        return super().describe(e)


class MalformedReply(Exception):
    """An OpenAI-compatible endpoint answered 200 but with no text to read."""


class OpenAIClient(Client):
    wait_setting = "SYNTHVLM_LLM_RETRY_WAIT"
    max_wait = 30.0

    def transient(self, e: BaseException) -> bool:
        import openai
        if isinstance(e, openai.APIStatusError):
            return e.status_code in (408, 429) or e.status_code >= 500
        return isinstance(e, (openai.APIConnectionError, MalformedReply))  # APITimeoutError is a connection error

    def describe(self, e: BaseException) -> str:
        status = getattr(e, "status_code", None)
        if status is not None:
            return f"HTTP {status}"
        return type(e).__name__ + (f" ({e})" if str(e) else "")


HUB = HubClient()
OPENAI = OpenAIClient()
