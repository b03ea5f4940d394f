"""What a failed request to Twenty raises, and how an HTTP error response is read into it.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md. A response is mapped to
one error class by its status (and, for a 400, its messages); a rate-limited or unavailable answer
also carries the wait the server asked for, which the retry policy in `transport` honours.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class TwentyError(Exception):
    """A request to Twenty failed; `status` is the HTTP status (None when no response came back)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        messages: Sequence[str] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.messages = list(messages)
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said


class TwentyAuthError(TwentyError):
    """401/403: the API key is missing, invalid, expired, revoked or lacks a permission (§1)."""


class TwentyNotFound(TwentyError):
    """404: no live record with that id (soft-deleted records answer 404 too, §4.4)."""


class TwentyValidationError(TwentyError):
    """400: Twenty rejected the request or a record in it; `messages` holds the server's reasons."""


class TwentyDuplicateError(TwentyValidationError):
    """400 `A duplicate entry was detected`: a unique value (e-mail, domain, id) is taken (§7.5)."""


class TwentyRateLimited(TwentyError):
    """The workspace's request budget stayed exhausted through every retry (§8)."""


class TwentyUnavailable(TwentyError):
    """5xx, timeout or connection failure that outlasted the retries."""

    def __init__(self, message: str, *, request_sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.request_sent = request_sent  # False when the request surely never reached the server


def error_for_response(
    method: str, path: str, response: httpx.Response, redact: Callable[[str], str]
) -> TwentyError:
    """The error a non-2xx `response` stands for; `redact` scrubs the server's messages."""
    status = response.status_code
    messages = [redact(message) for message in _server_messages(response)]
    detail = "; ".join(messages) or response.reason_phrase
    where = f"{method} {path} -> {status}"
    # §8.2: 429, or a 400 `Limit reached (…)` on some 2025 releases, means "out of budget".
    if status == 429 or (status == 400 and any(m.startswith("Limit reached") for m in messages)):
        return TwentyRateLimited(
            f"{where}: rate limited: {detail}", status=status, messages=messages,
            retry_after=_server_wait(response.headers),
        )
    if status in (401, 403):  # §1: the same "credentials rejected" on every release, never retried
        return TwentyAuthError(
            f"{where}: credentials rejected ({detail}); check the API key and its role",
            status=status, messages=messages,
        )
    if status == 404:
        return TwentyNotFound(f"{where}: {detail}", status=status, messages=messages)
    if status == 400:
        error_class = TwentyDuplicateError if "duplicate" in detail.lower() else TwentyValidationError
        return error_class(f"{where}: {detail}", status=status, messages=messages)
    if status >= 500:
        return TwentyUnavailable(
            f"{where}: {detail}", status=status, messages=messages,
            retry_after=_server_wait(response.headers),
        )
    return TwentyError(f"{where}: {detail}", status=status, messages=messages)


def _server_messages(response: httpx.Response) -> list[str]:
    """`messages` of the REST error envelope (§2.1), or the raw text when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return [response.text[:500]] if response.text else []
    if isinstance(body, dict):
        messages = body.get("messages") or ([body["message"]] if "message" in body else [])
        return [str(message) for message in messages]
    return [str(body)[:500]]


def _server_wait(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date), else `X-RateLimit-Reset` (§8.2)."""
    if retry_after := headers.get("Retry-After"):
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    if headers.get("X-RateLimit-Remaining") == "0" and (reset := headers.get("X-RateLimit-Reset")):
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return None
