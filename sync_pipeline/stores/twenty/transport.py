"""Paced, retried HTTP to one Twenty workspace: the layer `TwentyClient` sends every request through.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md. Requests are paced by a
client-side limiter sized from the configured requests-per-minute. What is safe to retry (429 and the
legacy 400 `Limit reached`, 5xx, timeouts, connection errors) is retried with exponential backoff and
jitter, or after the server's `Retry-After`; credential and validation errors never are.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Self

import httpx
import orjson
from pyrate_limiter import Limiter, Rate
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from sync_pipeline.redaction import redact_secret
from sync_pipeline.stores.twenty.errors import (
    TwentyError,
    TwentyRateLimited,
    TwentyUnavailable,
    error_for_response,
)

log = logging.getLogger(__name__)


class TwentyTransport:
    """Sends requests to one workspace within its rate limit, retrying what is safe to retry.

    Counters for run metadata: `requests` (HTTP requests sent), `rate_limited_responses` (429s and
    legacy `Limit reached` 400s), `seconds_throttled` (waiting on the local limiter plus waits
    imposed by the server), `retries`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        requests_per_minute: float = 100,
        timeout: float | httpx.Timeout = httpx.Timeout(30.0, connect=5.0),
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
    ) -> None:
        if not api_key:
            raise ValueError("a Twenty API key is required")
        self.max_attempts = max_attempts
        self.max_retry_after = max_retry_after
        self.requests = 0
        self.rate_limited_responses = 0
        self.seconds_throttled = 0.0
        self.retries = 0
        self._api_key = api_key
        # Requests are spread evenly over the minute instead of bursting: the budget is a token
        # bucket shared by every key of the workspace (§8.1), so bursts are what draws 429s.
        # A 1 ms buffer keeps pyrate-limiter's re-acquire after its computed wait from missing.
        interval_ms = max(1, math.ceil(60_000 / requests_per_minute))
        self._limiter = Limiter(Rate(1, interval_ms), max_delay=interval_ms + 1_000, buffer_ms=1)
        self._backoff = wait_exponential_jitter(
            multiplier=backoff_initial, max=backoff_max, jitter=backoff_initial
        )
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._http.base_url)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def metrics(self) -> dict[str, float | int]:
        """The counters, for materialization metadata."""
        return {
            "requests": self.requests,
            "rate_limited_responses": self.rate_limited_responses,
            "seconds_throttled": round(self.seconds_throttled, 3),
            "retries": self.retries,
        }

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        replay_safe: bool = True,
    ) -> httpx.Response:
        """Send with pacing and retries; `replay_safe` False keeps a possibly applied write from
        being sent twice (only rate-limited and never-sent requests are then retried)."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._retry_wait,
            retry=retry_if_exception(lambda exc: self._is_retryable(exc, replay_safe)),
            before_sleep=self._before_retry_sleep,
            reraise=True,
        )
        content = None if body is None else orjson.dumps(body)
        query = {key: value for key, value in (params or {}).items() if value is not None}
        return retrying(self._send_once, method, path, query, content)

    def _send_once(
        self, method: str, path: str, params: dict[str, Any], content: bytes | None
    ) -> httpx.Response:
        started = time.monotonic()
        self._limiter.try_acquire("twenty")
        self.seconds_throttled += time.monotonic() - started
        self.requests += 1
        try:
            response = self._http.request(method, path, params=params, content=content)
        except httpx.TransportError as exc:
            never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            raise TwentyUnavailable(
                self._redact(f"{method} {path}: {type(exc).__name__}: {exc}"), request_sent=not never_sent
            ) from exc
        log.debug("twenty %s %s -> %s", method, path, response.status_code)
        if response.is_success:
            return response
        error = error_for_response(method, path, response, self._redact)
        if isinstance(error, TwentyRateLimited):
            self.rate_limited_responses += 1
        raise error

    def _is_retryable(self, exc: BaseException, replay_safe: bool) -> bool:
        if isinstance(exc, TwentyRateLimited):
            # Throttling happens before any query runs, so the request was not applied (§8.2).
            return exc.retry_after is None or exc.retry_after <= self.max_retry_after
        if isinstance(exc, TwentyUnavailable):
            return replay_safe or not exc.request_sent
        return False

    def _retry_wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TwentyError) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)

    def _before_retry_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        self.retries += 1
        if isinstance(exc, TwentyRateLimited):
            self.seconds_throttled += pause
        log.info("twenty: %s; attempt %d, retrying in %.1f s", exc, state.attempt_number, pause)

    def _redact(self, text: str) -> str:
        return redact_secret(text, self._api_key)
