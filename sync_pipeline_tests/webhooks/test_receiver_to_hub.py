"""The `sync-pipeline webhooks` process end to end: Twenty's signed deliveries land in the hub inbox once,
forged ones are refused with nothing stored, and a hint becomes a change in the next capture."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from sync_pipeline import pipeline
from sync_pipeline.model.entities import entity
from sync_pipeline.webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from sync_pipeline_tests.fixtures.twenty import WEBHOOK_SECRET as SECRET
from sync_pipeline_tests.helpers import SETTINGS


def _inbox(topology) -> list[dict]:
    with topology.hub.connect() as conn:
        return conn.execute("select event_key, kind, store_record_id from sync.inbox order by id").fetchall()


def test_a_delivery_made_four_times_is_stored_once_and_applied_once(topology, webhook_receiver, twenty_standin,
                                                                   twenty_client, twenty_store):
    with twenty_standin.client() as admin:
        webhook = admin.post("/rest/metadata/webhooks", json={
            "targetUrl": webhook_receiver, "operations": ["person.*"], "secret": SECRET}).json()
        try:
            twenty_standin.set_faults(webhook_duplicates=4)
            created = twenty_client.create("people", {"name": {"firstName": "Hook"},
                                                      "emails": {"primaryEmail": "hook@example.com"}})
            deadline = time.monotonic() + 60  # the wait ends once the four deliveries are in; room for load
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
def test_a_forged_delivery_is_refused_and_nothing_is_stored(topology, webhook_receiver, forgery):
    body = orjson.dumps({"eventName": "person.created", "objectMetadata": {"nameSingular": "person"},
                         "record": {"id": "00000000-0000-0000-0000-000000000001", "updatedAt": "2026-01-01"}})
    timestamp = str(int(time.time() * 1000) - (3_600_000 if forgery == "stale timestamp" else 0))
    signature = sign(SECRET, timestamp, body)
    if forgery == "bad signature":
        signature = sign("not-the-secret", timestamp, body)
    response = httpx.post(webhook_receiver, content=body, headers={
        SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp, "Content-Type": "application/json"})
    assert response.status_code == 401
    assert _inbox(topology) == []
