"""ASGI receiver for Twenty webhooks (§9 of docs/twenty-api.md).

Twenty POSTs one request per record and webhook, waits 5 s and never retries (§9.4), sends no
delivery id and may deliver the same event several times (§9.7). So the receiver only verifies,
derives a stable event key and hands the event to a sink (the hub inbox), answering fast; a webhook
is a hint and the record is re-read before it is applied.

Answers: 200 stored or duplicate · 400 malformed · 401 bad or stale signature (sink not called) ·
413 body too large · 503 the sink failed (the event was not stored, say so instead of losing it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sync_pipeline.webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify

log = logging.getLogger(__name__)

_DELETE_ACTIONS = ("deleted", "destroyed")  # soft and hard delete (§5.5)


@dataclass(frozen=True)
class WebhookEvent:
    """One verified delivery. `op` is "delete" or "upsert", a hint only: restores have been sent
    as deletes (§9.7), so the record's `deletedAt` must be re-read."""

    event_key: str
    event_name: str  # e.g. "person.updated"
    object_name: str  # Twenty's singular object name, e.g. "person"
    record_id: str
    op: str
    payload: dict[str, Any]
    received_at: datetime


WebhookSink = Callable[[WebhookEvent], bool]
"""Stores an event; returns True when it was new, False for a duplicate; raises when it failed."""


class MalformedEvent(ValueError):
    """The body is not a Twenty webhook event."""


def event_key(event_name: str, record_id: str, record: dict[str, Any]) -> str:
    """A key equal for every delivery of one change and different between changes.

    Deliveries of one event differ only in `eventDate` and the webhook id (§9.2, twentyhq/twenty#6735),
    while every change gives the record a new `updatedAt` (§10.1). A hash of the whole record (sorted
    keys) keeps two changes apart even when a writer set `updatedAt` itself (§10.2).
    """
    digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return f"twenty:{event_name}:{record_id}:{digest}"


def parse_event(payload: Any, received_at: datetime) -> WebhookEvent:
    """The event in a §9.2 payload; raises MalformedEvent when a part we rely on is missing."""
    if not isinstance(payload, dict):
        raise MalformedEvent("payload is not a JSON object")
    event_name = payload.get("eventName")
    if not isinstance(event_name, str) or "." not in event_name:
        raise MalformedEvent("missing or malformed eventName")
    record = payload.get("record")
    record_id = record.get("id") if isinstance(record, dict) else None
    if not isinstance(record, dict) or not isinstance(record_id, str) or not record_id:
        raise MalformedEvent("missing record.id")
    object_from_name, action = event_name.rsplit(".", 1)
    metadata = payload.get("objectMetadata")
    object_name = metadata.get("nameSingular") if isinstance(metadata, dict) else None
    return WebhookEvent(
        event_key=event_key(event_name, record_id, record),
        event_name=event_name,
        object_name=object_name or object_from_name,
        record_id=record_id,
        op="delete" if action in _DELETE_ACTIONS else "upsert",
        payload=payload,
        received_at=received_at,
    )


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, max_body_bytes: int) -> bytes:
    """The raw body, refusing more than `max_body_bytes` whatever Content-Length claimed."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise _BodyTooLarge
    return bytes(body)


def _error(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)


def create_receiver_app(
    secret: str,
    sink: WebhookSink,
    tolerance_seconds: float = 300,
    max_body_bytes: int = 1_048_576,
) -> Starlette:
    """The receiver: POST on any path takes a delivery, GET /healthz answers "ok"."""
    if not secret:
        raise ValueError("a webhook secret is required: unsigned deliveries cannot be trusted")

    async def receive(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            return _error(400, "invalid Content-Length")
        if declared is not None and int(declared) > max_body_bytes:
            return _error(413, "body too large")
        try:
            body = await _read_body(request, max_body_bytes)
        except _BodyTooLarge:
            return _error(413, "body too large")
        try:
            verify(
                secret,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                tolerance_seconds,
            )
        except SignatureError as problem:
            sender = request.client.host if request.client else "?"
            log.warning("webhook rejected from %s: %s", sender, problem)
            return _error(401, str(problem))
        try:
            event = parse_event(orjson.loads(body), datetime.now(timezone.utc))
        except (orjson.JSONDecodeError, MalformedEvent) as problem:
            log.warning("webhook rejected: malformed event: %s", problem)
            return _error(400, "malformed event")
        try:
            stored = await run_in_threadpool(sink, event)
        except Exception:
            # Twenty does not retry (§9.4); a 5xx at least shows the loss in its webhook audit log,
            # and polling picks the change up.
            log.exception("webhook sink failed for %s", event.event_key)
            return _error(503, "event not stored")
        log.debug("webhook %s %s", event.event_key, "stored" if stored else "duplicate")
        return JSONResponse({"event_key": event.event_key, "status": "stored" if stored else "duplicate"})

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/{path:path}", receive, methods=["POST"]),
        ]
    )


def serve_receiver(host: str, port: int, secret: str, sink: WebhookSink, **uvicorn_options: Any) -> None:
    """Run the receiver with uvicorn until interrupted."""
    uvicorn.run(create_receiver_app(secret, sink), host=host, port=port, **uvicorn_options)
