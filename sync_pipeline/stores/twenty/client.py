"""A synchronous client for Twenty's REST API: paging, filters, upserts, batch writes, deletes.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md. Every request goes through
`TwentyTransport`, which paces it inside the workspace's rate limit and retries what is safe to retry;
the errors it raises are those of `errors`. Batch writes split a rejected batch until the bad records
stand alone.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sync_pipeline.stores.twenty.errors import (
    TwentyAuthError,
    TwentyDuplicateError,
    TwentyError,
    TwentyNotFound,
    TwentyRateLimited,
    TwentyUnavailable,
    TwentyValidationError,
)
from sync_pipeline.stores.twenty.transport import TwentyTransport

# The errors its methods raise are part of the client's interface, importable from here with it.
__all__ = [
    "AcceptedRecord",
    "BatchResult",
    "FailedRecord",
    "Page",
    "TwentyAuthError",
    "TwentyClient",
    "TwentyDuplicateError",
    "TwentyError",
    "TwentyNotFound",
    "TwentyRateLimited",
    "TwentyUnavailable",
    "TwentyValidationError",
]

log = logging.getLogger(__name__)

# §4.1/§10.4: updatedAt order for incremental pulls; naming id explicitly keeps the tie-break visible.
DEFAULT_ORDER_BY = "updatedAt[AscNullsFirst],id[AscNullsFirst]"
# §4.1: 2026 servers page up to 200 records, older ones clamp silently to 60, so asking 200 is always safe.
MAX_PAGE_SIZE = 200
# §5.2: the server names the batch cap in force when a batch is larger than it.
_BATCH_CAP_MESSAGE = re.compile(r"Maximum number of records to upsert is (\d+)")


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a list query (§4.2)."""

    records: list[dict[str, Any]]
    start_cursor: str | None
    end_cursor: str | None
    has_next_page: bool
    total_count: int | None
    served_at: datetime | None = None  # the server's clock when it answered (`Date`, whole seconds)


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


class TwentyClient(TwentyTransport):
    """REST client for one Twenty workspace.

    `batch_size` caps the records per batch write (lowered when the server names a lower cap) and
    `page_size` the records per page; the other options set the pacing and retries of
    `TwentyTransport`, whose counters (`requests`, `retries`, ...) `metrics()` reports.
    """

    def __init__(
        self, base_url: str, api_key: str, *, batch_size: int = 60, page_size: int = 60, **pacing: Any
    ) -> None:
        super().__init__(base_url, api_key, **pacing)
        self.batch_size = batch_size
        self.page_size = page_size

    # --- reads ------------------------------------------------------------------------------------

    def pages(
        self,
        object_name: str,
        *,
        filter: str | None = None,
        order_by: str = DEFAULT_ORDER_BY,
        fields: Sequence[str] | None = None,
        starting_after: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Page]:
        """Pages of a list query, following `pageInfo.endCursor` (§4.2), of `limit` records (default
        `page_size`; the server clamps it to its maximum).

        A cursor is only valid with the same `order_by` and `filter`; resume a walk by passing the
        last page's `end_cursor` as `starting_after`.
        """
        params: dict[str, Any] = {"limit": limit or self.page_size, "depth": 0, "order_by": order_by}
        if filter:
            params["filter"] = filter
        if fields:
            params["fields"] = ",".join(fields)
        cursor = starting_after
        while True:
            query = {**params, "starting_after": cursor}
            response = self._request("GET", f"/rest/{object_name}", params=query)
            body = response.json()
            page_info = body.get("pageInfo") or {}
            page = Page(
                records=_single_value(body),
                start_cursor=page_info.get("startCursor"),
                end_cursor=page_info.get("endCursor"),
                has_next_page=bool(page_info.get("hasNextPage")),
                total_count=body.get("totalCount"),
                served_at=_served_at(response.headers.get("date")),
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

    def ids(self, object_name: str, *, filter: str | None = None) -> Iterator[str]:
        """The id of every record matching `filter`, in id order: the cheap walk of §10.6, pages of
        `MAX_PAGE_SIZE` ids (`fields=id`, 2026; older servers send whole records, still paged)."""
        for page in self.pages(object_name, filter=filter, order_by="id[AscNullsFirst]", fields=["id"],
                               limit=MAX_PAGE_SIZE):
            yield from (record["id"] for record in page.records)

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


# --- helpers ----------------------------------------------------------------------------------------


def _record_path(object_name: str, record_id: str) -> str:
    """`/rest/{plural}/{id}`; the id must be a UUID (§3), which also keeps it from reshaping the path."""
    try:
        uuid.UUID(record_id)
    except (TypeError, ValueError, AttributeError):
        raise TwentyValidationError(f"{record_id!r} is not a valid UUID") from None
    return f"/rest/{object_name}/{record_id}"


def _served_at(date: str | None) -> datetime | None:
    """An HTTP `Date` header as a time; None when absent or unreadable."""
    try:
        return parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None


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
