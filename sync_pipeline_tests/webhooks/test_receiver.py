"""The webhook receiver served by uvicorn on loopback, fed by httpx and by the Twenty stand-in."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from sync_pipeline.sandbox.twenty.server import run_standin
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.webhooks.receiver import WebhookEvent, create_receiver_app
from sync_pipeline.webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

SECRET = "whsec-test-0123456789abcdef"
MAX_BODY = 4096


class MemorySink:
    """Stands in for the hub inbox: keeps the first event per key, counts every call."""

    def __init__(self) -> None:
        self.calls: list[WebhookEvent] = []
        self.stored: dict[str, WebhookEvent] = {}
        self.failing = False
        self._lock = threading.Lock()

    def __call__(self, event: WebhookEvent) -> bool:
        if self.failing:
            raise RuntimeError("inbox unavailable")
        with self._lock:
            self.calls.append(event)
            return self.stored.setdefault(event.event_key, event) is event

    def wait_for_calls(self, count: int, timeout: float = 60.0) -> list[WebhookEvent]:  # returns on arrival
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.calls)


class LoopbackServer:
    """uvicorn serving an ASGI app on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60  # room for a loaded machine
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks/twenty"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture()
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture()
def receiver_url(sink: MemorySink) -> Iterator[str]:
    server = LoopbackServer(create_receiver_app(SECRET, sink, tolerance_seconds=300, max_body_bytes=MAX_BODY))
    yield server.url
    server.stop()


def event_body(event_name: str = "person.updated", record_id: str | None = None, **record: Any) -> bytes:
    """A docs/twenty-api.md §9.2 payload as Twenty serialises it (compact JSON, key order of the spec)."""
    payload = {
        "targetUrl": "http://127.0.0.1/hooks/twenty",
        "eventName": event_name,
        "objectMetadata": {
            "id": "20202020-e674-48e5-a542-72570eee7213", "nameSingular": event_name.split(".")[0]
        },
        "workspaceId": "3b8e6458-5fc1-4e63-8563-008ccddaa6db",
        "webhookId": str(uuid.uuid4()),
        "eventDate": f"2025-11-04T16:01:{time.time() % 60:06.3f}Z",
        "record": {"id": record_id or str(uuid.uuid4()), "jobTitle": "CEO",
                   "updatedAt": "2025-11-04T16:01:02.341Z", "deletedAt": None, **record},
        "updatedFields": ["jobTitle"],
    }
    return orjson.dumps(payload)


def signed_headers(body: bytes, timestamp_ms: int | None = None, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        "X-Twenty-Webhook-Nonce": uuid.uuid4().hex,
    }


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=10)


# --- accepted -----------------------------------------------------------------------------------------


def test_a_signed_event_reaches_the_sink(receiver_url: str, sink: MemorySink) -> None:
    record_id = str(uuid.uuid4())
    body = event_body("person.updated", record_id)
    response = post(receiver_url, body, signed_headers(body))
    assert response.status_code == 200
    (event,) = sink.calls
    assert response.json() == {"event_key": event.event_key, "status": "stored"}
    assert (event.event_name, event.object_name, event.record_id, event.op) == (
        "person.updated", "person", record_id, "upsert",
    )
    assert event.payload == orjson.loads(body)
    assert event.received_at.tzinfo is not None


def test_a_redelivery_gets_the_same_key_and_a_new_change_another(receiver_url: str, sink: MemorySink) -> None:
    record_id = str(uuid.uuid4())
    first = event_body("person.updated", record_id)
    again = event_body("person.updated", record_id)  # new eventDate and webhook id, same change
    later = event_body("person.updated", record_id, updatedAt="2025-11-04T16:05:00.000Z")
    deleted = event_body("person.deleted", record_id)
    bodies = (first, again, later, deleted)
    answers = [post(receiver_url, body, signed_headers(body)).json() for body in bodies]
    assert [a["status"] for a in answers] == ["stored", "duplicate", "stored", "stored"]
    keys = [a["event_key"] for a in answers]
    assert keys[0] == keys[1] and len({keys[0], keys[2], keys[3]}) == 3
    assert sink.calls[3].op == "delete"


# --- rejected -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h: {**h, SIGNATURE_HEADER: "0" * 64}, id="wrong-signature"),
        pytest.param(
            lambda h: {**h, SIGNATURE_HEADER: sign("other", h[TIMESTAMP_HEADER], b"x")}, id="other-secret"
        ),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != SIGNATURE_HEADER}, id="no-signature"),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, id="no-timestamp"),
        pytest.param(
            lambda h: {**h, TIMESTAMP_HEADER: str(int(h[TIMESTAMP_HEADER]) + 1)}, id="timestamp-changed"
        ),
        pytest.param(lambda h: {**h, SIGNATURE_HEADER: b"\xe9" * 64}, id="non-ascii-signature"),
    ],
)
def test_a_bad_signature_is_401_and_nothing_stored(receiver_url: str, sink: MemorySink, tamper: Any) -> None:
    body = event_body()
    response = post(receiver_url, body, tamper(signed_headers(body)))
    assert response.status_code == 401
    assert sink.calls == []


def test_a_tampered_body_is_401(receiver_url: str, sink: MemorySink) -> None:
    body = event_body()
    headers = signed_headers(body)
    assert post(receiver_url, body.replace(b"CEO", b"CFO"), headers).status_code == 401
    assert sink.calls == []


@pytest.mark.parametrize("skew_seconds", [-301, 301])
def test_a_stale_or_future_timestamp_is_401(receiver_url: str, sink: MemorySink, skew_seconds: int) -> None:
    body = event_body()
    headers = signed_headers(body, int((time.time() + skew_seconds) * 1000))
    assert post(receiver_url, body, headers).status_code == 401
    assert sink.calls == []


@pytest.mark.parametrize(
    "body",
    [b'{"eventName": "person.updated", "record": {', b"[1, 2]", b'{"eventName": "person.updated"}', b""],
    ids=["truncated-json", "not-an-object", "no-record", "empty"],
)
def test_a_malformed_event_is_400(receiver_url: str, sink: MemorySink, body: bytes) -> None:
    assert post(receiver_url, body, signed_headers(body)).status_code == 400
    assert sink.calls == []


def test_an_oversized_body_is_413(receiver_url: str, sink: MemorySink) -> None:
    body = event_body(jobTitle="x" * MAX_BODY)
    assert post(receiver_url, body, signed_headers(body)).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes read are what count
        yield from (body[i : i + 512] for i in range(0, len(body), 512))

    response = httpx.post(receiver_url, content=chunks(), headers=signed_headers(body), timeout=10)
    assert response.status_code == 413
    assert sink.calls == []


def test_a_failing_sink_is_503(receiver_url: str, sink: MemorySink) -> None:
    sink.failing = True
    body = event_body()
    assert post(receiver_url, body, signed_headers(body)).status_code == 503


# --- deliveries signed by the stand-in ------------------------------------------------------------------


def test_standin_deliveries_duplicated_four_times_give_one_event_key(
    receiver_url: str, sink: MemorySink
) -> None:
    with run_standin(rate_limit_per_minute=100_000, webhook_duplicates=4) as standin:
        with standin.client() as admin:
            registration = admin.post(
                "/rest/metadata/webhooks",
                json={"targetUrl": receiver_url, "operations": ["person.*"], "secret": SECRET},
            )
            assert registration.status_code == 201
        with TwentyClient(standin.base_url, standin.api_key, requests_per_minute=60_000) as twenty:
            person = twenty.create("people", {"emails": {"primaryEmail": f"{uuid.uuid4().hex}@example.com"}})
            created = sink.wait_for_calls(4)
            twenty.update("people", person["id"], {"jobTitle": "CTO"})
            updated = sink.wait_for_calls(8)[4:]
            twenty.soft_delete("people", person["id"])
            deleted = sink.wait_for_calls(12)[8:]
            twenty.create("companies", {"name": "Not subscribed"})
            time.sleep(0.3)

    assert len(sink.calls) == 12
    for events, name, op in ((created, "person.created", "upsert"), (updated, "person.updated", "upsert"),
                             (deleted, "person.deleted", "delete")):
        assert {(e.event_name, e.record_id, e.op) for e in events} == {(name, person["id"], op)}
        assert len({e.event_key for e in events}) == 1
    assert len(sink.stored) == 3
