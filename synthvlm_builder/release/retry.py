"""Retrying Hub calls on transient errors, configured once (tenacity does the looping and waiting).

Transient: HTTP 408, 429 and 5xx gateway errors, and transport failures (timeouts, dropped
connections). A call that changes the repository can pass `landed`, which is asked after each
transient failure whether the call took effect anyway (its response was lost); a non-None answer
is returned as the result, so an operation is never sent twice.
"""
from __future__ import annotations

from typing import Callable, Optional

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from .. import reporter
from ..settings import setting

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
RETRIES = 5        # retries after the first attempt; SYNTHVLM_PUBLISH_RETRIES overrides
BASE_WAIT = 1.0    # seconds before the first retry, doubled each time ...; SYNTHVLM_PUBLISH_RETRY_WAIT overrides
MAX_WAIT = 8.0     # ... up to this


def transport_errors() -> tuple[type, ...]:
    """The client's network errors (huggingface_hub >= 1.0 speaks httpx2, whose errors are not OSErrors)."""
    try:
        import httpx2
        return (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
    except ImportError:
        return (TimeoutError, ConnectionError)


def is_transient(e: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
    if isinstance(e, OfflineModeIsEnabled):
        return False
    if isinstance(e, HfHubHTTPError) and getattr(e, "response", None) is not None:
        return e.response.status_code in RETRY_STATUSES
    if isinstance(e, LocalEntryNotFoundError) and e.__cause__ is not None:  # hf_hub_download's HEAD failed
        return is_transient(e.__cause__)
    return isinstance(e, transport_errors())


def describe(e: BaseException) -> str:
    response = getattr(e, "response", None)
    status = getattr(response, "status_code", None)
    server = getattr(e, "server_message", None)
    if status is not None:
        text = str(e).strip()
        detail = (server or (text.splitlines()[0] if text else "")).strip()
        return f"HTTP {status}" + (f" ({detail})" if detail else "")
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class _Landed(Exception):
    """Raised inside an attempt when `landed` says a failed call took effect; carries its answer."""

    def __init__(self, value):
        self.value = value


def retry(what: str, call: Callable, landed: Optional[Callable] = None):
    """call() until it succeeds or fails for good (a non-transient error, or retries used up)."""
    retries = setting("SYNTHVLM_PUBLISH_RETRIES", RETRIES)
    wait = setting("SYNTHVLM_PUBLISH_RETRY_WAIT", BASE_WAIT)

    def attempt():
        try:
            return call()
        except Exception as e:
            if landed is not None and is_transient(e):
                try:
                    done = landed()
                except Exception as check_error:
                    if not is_transient(check_error):
                        raise
                    done = None
                if done is not None:
                    reporter.info(f"{what}: {describe(e)}; it had taken effect nonetheless")
                    raise _Landed(done) from e
            raise

    def before_sleep(state: RetryCallState) -> None:
        reporter.info(f"{what}: {describe(state.outcome.exception())}; retry {state.attempt_number}/{retries} in"
                      f" {state.next_action.sleep:g}s")

    try:
        return Retrying(stop=stop_after_attempt(retries + 1), wait=wait_exponential(multiplier=wait, max=MAX_WAIT),
                        retry=retry_if_exception(is_transient), before_sleep=before_sleep, reraise=True)(attempt)
    except _Landed as answer:
        return answer.value

