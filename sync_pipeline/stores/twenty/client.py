"""A synchronous client for Twenty's REST API, built to stay inside the workspace's rate limit.

Section numbers (§) refer to the API contract in `twenty-api.md`. The client paces itself with a
client-side limiter sized from the configured requests-per-minute, retries what is safe to retry
(429 and the legacy 400 `Limit reached`, 5xx, timeouts, connection errors) with exponential backoff
and jitter or the server's `Retry-After`, and never retries credential or validation errors.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from pyrate_limiter import Limiter, Rate
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)

# §4.1/§10.4: updatedAt order for incremental pulls; naming id explicitly keeps the tie-break visible.
DEFAULT_ORDER_BY = "updatedAt[AscNullsFirst],id[AscNullsFirst]"
# §5.2: the server names the batch cap in force when a batch is larger than it.
_BATCH_CAP_MESSAGE = re.compile(r"Maximum number of records to upsert is (\d+)")


# --- errors -----------------------------------------------------------------------------------------


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


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a list query (§4.2)."""

    records: list[dict[str, Any]]
    start_cursor: str | None
    end_cursor: str | None
    has_next_page: bool
    total_count: int | None


@dataclass(frozen=True)
class AcceptedRecord:
    """A record Twenty stored: `index` in the input, the payload sent, and the record as stored."""

    index: int
    record: dict[str, Any]
    result: dict[str, Any]

    @property
    def id(self) -> str:
        return self.result["id"]


@dataclass(frozen=True)
class FailedRecord:
    """A record Twenty did not store, with the error that isolated it."""

    index: int
    record: dict[str, Any]
    error: TwentyError


@dataclass
class BatchResult:
    """Outcome of `batch_create`, both lists in input order (parts are sent left to right)."""

    accepted: list[AcceptedRecord] = field(default_factory=list)
    failed: list[FailedRecord] = field(default_factory=list)
    requests: int = 0  # batch POSTs sent, splits included, retries of one POST not counted

    @property
    def ok(self) -> bool:
        return not self.failed


# --- client -----------------------------------------------------------------------------------------


class TwentyClient:
    """REST client for one Twenty workspace.

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
        batch_size: int = 60,
        page_size: int = 60,
        timeout: float | httpx.Timeout = httpx.Timeout(30.0, connect=5.0),
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
    ) -> None:
        if not api_key:
            raise ValueError("a Twenty API key is required")
        self.batch_size = batch_size
        self.page_size = page_size
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
        return f"TwentyClient({str(self._http.base_url)!r})"

    def __enter__(self) -> TwentyClient:
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

    # --- reads ------------------------------------------------------------------------------------

    def pages(
        self,
        object_name: str,
        *,
        filter: str | None = None,
        order_by: str = DEFAULT_ORDER_BY,
        fields: Sequence[str] | None = None,
        starting_after: str | None = None,
    ) -> Iterator[Page]:
        """Pages of a list query, following `pageInfo.endCursor` (§4.2).

        A cursor is only valid with the same `order_by` and `filter`; resume a walk by passing the
        last page's `end_cursor` as `starting_after`.
        """
        params: dict[str, Any] = {"limit": self.page_size, "depth": 0, "order_by": order_by}
        if filter:
            params["filter"] = filter
        if fields:
            params["fields"] = ",".join(fields)
        cursor = starting_after
        while True:
            query = {**params, "starting_after": cursor}
            body = self._request("GET", f"/rest/{object_name}", params=query).json()
            page_info = body.get("pageInfo") or {}
            page = Page(
                records=_single_value(body),
                start_cursor=page_info.get("startCursor"),
                end_cursor=page_info.get("endCursor"),
                has_next_page=bool(page_info.get("hasNextPage")),
                total_count=body.get("totalCount"),
            )
            yield page
            if not page.has_next_page or not page.end_cursor:
                return
            cursor = page.end_cursor

    def list(
        self,
        object_name: str,
        *,
        filter: str | None = None,
        order_by: str = DEFAULT_ORDER_BY,
        fields: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every record matching `filter` (§4.3), page after page."""
        for page in self.pages(object_name, filter=filter, order_by=order_by, fields=fields):
            yield from page.records

    def get(self, object_name: str, record_id: str) -> dict[str, Any]:
        """One live record; raises TwentyNotFound when it is missing or soft-deleted (§4.4)."""
        return _single_value(self._request("GET", _record_path(object_name, record_id)).json())

    # --- writes -----------------------------------------------------------------------------------

    def create(self, object_name: str, record: dict[str, Any], *, upsert: bool = False) -> dict[str, Any]:
        """Create one record, or with `upsert` create-or-update it by id / unique fields (§5.1, §5.3)."""
        response = self._request(
            "POST",
            f"/rest/{object_name}",
            params=_upsert_param(upsert),
            body=record,
            replay_safe=_replay_safe_write([record], upsert),
        )
        return _single_value(response.json())

    def update(self, object_name: str, record_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Partial update; send composite fields whole (§5.4)."""
        return _single_value(self._request("PATCH", _record_path(object_name, record_id), body=patch).json())

    def soft_delete(self, object_name: str, record_id: str) -> dict[str, Any]:
        """Soft delete (restorable). `soft_delete=true` must be explicit: DELETE alone destroys (§5.5)."""
        path = _record_path(object_name, record_id)
        response = self._request("DELETE", path, params={"soft_delete": "true"})
        return _single_value(response.json())

    def destroy(self, object_name: str, record_id: str) -> dict[str, Any]:
        """Hard delete (§5.5). After a retried attempt, TwentyNotFound means the first one landed."""
        return _single_value(self._request("DELETE", _record_path(object_name, record_id)).json())

    def restore(self, object_name: str, record_id: str) -> dict[str, Any]:
        """Restore a soft-deleted record, on the 2026 route or else the late-2025 one (§3, §5.5)."""
        _record_path(object_name, record_id)  # validates the id before it goes into either path
        try:
            response = self._request("PATCH", f"/rest/{object_name}/{record_id}/restore")
        except (TwentyNotFound, TwentyValidationError) as first_error:
            try:
                response = self._request("PATCH", f"/rest/restore/{object_name}/{record_id}")
            except (TwentyNotFound, TwentyValidationError):
                raise first_error from None
        return _single_value(response.json())

    def batch_create(
        self, object_name: str, records: Sequence[dict[str, Any]], *, upsert: bool = True
    ) -> BatchResult:
        """Create (by default upsert) records in batches of at most `batch_size` (§5.2).

        A batch that Twenty rejects with a 400 is split in halves until the bad record(s) stand
        alone; halves that were accepted are never sent again. When Twenty stays unavailable or out
        of budget, the records not yet accepted are returned as failed with that error so a later run
        can retry them. Credential errors are raised.
        """
        result = BatchResult()
        indexed = list(enumerate(records))
        pending = deque(_chunks(indexed, self.batch_size))
        while pending:
            part = pending.popleft()
            payload = [record for _, record in part]
            result.requests += 1
            try:
                response = self._request(
                    "POST",
                    f"/rest/batch/{object_name}",
                    params=_upsert_param(upsert),
                    body=payload,
                    replay_safe=_replay_safe_write(payload, upsert),
                )
            except TwentyValidationError as exc:
                cap = _batch_cap(exc)
                if cap is not None and cap < len(part):
                    # The server's cap is lower than ours (§5.2 Versioned): adopt it and re-chunk.
                    self.batch_size = cap
                    pending.extendleft(reversed(_chunks(part, cap)))
                elif len(part) == 1:
                    result.failed.append(FailedRecord(part[0][0], part[0][1], exc))
                else:
                    middle = len(part) // 2
                    pending.extendleft((part[middle:], part[:middle]))
                continue
            except TwentyAuthError:
                raise
            except TwentyError as exc:
                log.warning("twenty batch write to %s stopped: %s", object_name, exc)
                for rest in (part, *pending):
                    result.failed.extend(FailedRecord(index, record, exc) for index, record in rest)
                break
            written = _single_value(response.json())
            if len(written) != len(part):
                raise TwentyError(
                    f"POST /rest/batch/{object_name}: sent {len(part)} records, "
                    f"Twenty returned {len(written)}"
                )
            result.accepted.extend(
                AcceptedRecord(index, record, stored) for (index, record), stored in zip(part, written)
            )
        return result

    # --- transport --------------------------------------------------------------------------------

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
        raise self._error_for(method, path, response)

    def _error_for(self, method: str, path: str, response: httpx.Response) -> TwentyError:
        status = response.status_code
        messages = [self._redact(message) for message in _server_messages(response)]
        detail = "; ".join(messages) or response.reason_phrase
        where = f"{method} {path} -> {status}"
        # §8.2: 429, or a 400 `Limit reached (…)` on some 2025 releases, means "out of budget".
        if status == 429 or (status == 400 and any(m.startswith("Limit reached") for m in messages)):
            self.rate_limited_responses += 1
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
        return text.replace(self._api_key, "***")


# --- helpers ----------------------------------------------------------------------------------------


def _record_path(object_name: str, record_id: str) -> str:
    """`/rest/{plural}/{id}`; the id must be a UUID (§3), which also keeps it from reshaping the path."""
    try:
        uuid.UUID(record_id)
    except (TypeError, ValueError, AttributeError):
        raise TwentyValidationError(f"{record_id!r} is not a valid UUID") from None
    return f"/rest/{object_name}/{record_id}"


def _single_value(body: dict[str, Any]) -> Any:
    """The one value under `data`, whatever its operation- and release-specific key (§3)."""
    data = body.get("data")
    if isinstance(data, dict) and len(data) == 1:
        (value,) = data.values()
        return value
    return data


def _upsert_param(upsert: bool) -> dict[str, str]:
    return {"upsert": "true"} if upsert else {}


def _replay_safe_write(records: Sequence[dict[str, Any]], upsert: bool) -> bool:
    """An upsert whose every record names its id matches the same rows when replayed (§5.3), so a
    5xx or timeout after sending can be retried without creating a second copy."""
    return upsert and all(record.get("id") for record in records)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _batch_cap(exc: TwentyValidationError) -> int | None:
    for message in exc.messages:
        if match := _BATCH_CAP_MESSAGE.search(message):
            return int(match.group(1))
    return None


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
