"""The `sync-pipeline webhooks` process end to end: Twenty's signed deliveries land in the hub inbox once,
forged ones are refused with nothing stored, and a hint becomes a change in the next capture."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from sync_pipeline import pipeline
from sync_pipeline.model.entities import entity
from sync_pipeline.sandbox.postgres import free_port
from sync_pipeline.webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from sync_pipeline_tests.helpers import SETTINGS

SECRET = "whsec-e2e-0123456789"


@pytest.fixture
def receiver(topology) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "SYNC_HUB_DATABASE_URL": topology.local_dsn, "TWENTY_WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen([sys.executable, "-m", "sync_pipeline.cli", "webhooks", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.1)
    yield f"{url}/hooks/twenty"
    process.terminate()
    process.wait(timeout=10)


def _inbox(topology) -> list[dict]:
    with topology.hub.connect() as conn:
        return conn.execute("select event_key, kind, store_record_id from sync.inbox order by id").fetchall()


def test_a_delivery_made_four_times_is_stored_once_and_applied_once(topology, receiver, twenty_standin,
                                                                   twenty_client, twenty_store):
    with twenty_standin.client() as admin:
        webhook = admin.post("/rest/metadata/webhooks", json={
            "targetUrl": receiver, "operations": ["person.*"], "secret": SECRET}).json()
        try:
            twenty_standin.set_faults(webhook_duplicates=4)
            created = twenty_client.create("people", {"name": {"firstName": "Hook"},
                                                      "emails": {"primaryEmail": "hook@example.com"}})
            deadline = time.monotonic() + 15
            while (twenty_standin.stats()["webhooks_sent"] < 4 or not _inbox(topology)) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # let any straggling duplicate land before counting
        finally:
            admin.delete(f"/rest/metadata/webhooks/{webhook['id']}")
    assert twenty_standin.stats()["webhooks_sent"] >= 4
    rows = _inbox(topology)
    [row] = rows
    assert (row["kind"], row["store_record_id"]) == ("webhook", created["id"])
    # Every repeat is counted for the UI (the capture asset's `duplicate_deliveries_24h`), and ignored.
    assert topology.hub.duplicate_deliveries("twenty", "people") == twenty_standin.stats()["webhooks_sent"] - 1
    stats = pipeline.capture(topology.hub, twenty_store, entity("people"), "r1", SETTINGS)
    assert stats.hints == 1
    assert pipeline.resolve(topology.hub, entity("people"), "r1", SETTINGS).applied == 1


@pytest.mark.parametrize("forgery", ["bad signature", "stale timestamp"])
def test_a_forged_delivery_is_refused_and_nothing_is_stored(topology, receiver, forgery):
    body = orjson.dumps({"eventName": "person.created", "objectMetadata": {"nameSingular": "person"},
                         "record": {"id": "00000000-0000-0000-0000-000000000001", "updatedAt": "2026-01-01"}})
    timestamp = str(int(time.time() * 1000) - (3_600_000 if forgery == "stale timestamp" else 0))
    signature = sign(SECRET, timestamp, body)
    if forgery == "bad signature":
        signature = sign("not-the-secret", timestamp, body)
    response = httpx.post(receiver, content=body, headers={
        SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp, "Content-Type": "application/json"})
    assert response.status_code == 401
    assert _inbox(topology) == []
