"""Echoes of our own writes (issue 13): the webhooks a sync's publish to Twenty brings back are recognised by the
`sync-pipeline webhooks` process and kept as applied, so the webhook sensor starts no run for them; an edit made
in Twenty after them is still a hint that syncs. Over real HTTP (the stand-in, the receiver), on a real hub."""

from __future__ import annotations

import time
from typing import Any

import dagster as dg
import psycopg
import pytest

from sync_pipeline.defs.automation import webhook_inbox_sensor
from sync_pipeline.defs.resources import HubResource
from sync_pipeline.model.entities import entity
from sync_pipeline.webhooks.echoes import echoed_hash
from sync_pipeline_tests.helpers import insert_person, people, sync_once

PEOPLE = entity("people")


def _rows_once(topology, count: int, query: str, record_id: str) -> list[dict[str, Any]]:
    """The rows of a query about one record, once there are `count` of them (Twenty sends on its own time)."""
    deadline = time.monotonic() + 30
    while True:
        with topology.hub.connect() as conn:
            rows = conn.execute(query, (record_id,)).fetchall()
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"{len(rows)} of {count} rows for {record_id}: {query}"
        time.sleep(0.1)


def _webhook_rows(topology, record_id: str, count: int) -> list[dict[str, Any]]:
    return _rows_once(topology, count, """select event_key, payload->>'eventName' as event, applied_at
                                          from sync.inbox where kind = 'webhook' and store_record_id = %s
                                          order by id""", record_id)


def _outcomes(topology, record_id: str, count: int) -> list[tuple[str, str]]:
    """The outcomes at capture of the record's webhooks."""
    rows = _rows_once(topology, count, """select outcome, event_key from sync.record_outcomes
                                          where store = 'twenty' and stage = 'capture' and record_id = %s
                                          order by id""", record_id)
    return [(r["outcome"], r["event_key"]) for r in rows]


def _sensor_tick(topology) -> object:
    """One tick of the webhook sensor, as its first (no cursor: every waiting hint is new)."""
    with dg.DagsterInstance.ephemeral() as instance, dg.build_sensor_context(
            instance=instance, resources={"hub": HubResource(dsn=topology.local_dsn)}) as context:
        return webhook_inbox_sensor(context)


def test_the_webhooks_of_a_publish_are_echoes_and_a_later_edit_in_twenty_still_syncs(
        topology, twenty_store, twenty_standin, person_webhook):
    t = topology
    stores = [t.supabase, twenty_store]
    twenty_standin.set_faults(webhook_duplicates=2)  # each event delivered twice
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Grace", email="grace@navy.mil", job_title="Captain")
    sync_once(t.hub, stores, entities=[PEOPLE])  # creates her in Twenty
    created = _webhook_rows(t, pid, 1)[0]
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update people set job_title = 'Commodore' where id = %s", (pid,))
    sync_once(t.hub, stores, entities=[PEOPLE])  # updates her in Twenty
    updated = _webhook_rows(t, pid, 2)[1]

    assert [created["event"], updated["event"]] == ["person.created", "person.updated"]
    assert created["applied_at"] is not None and updated["applied_at"] is not None  # applied: no hint waits
    # Each recorded once as an echo; its second delivery stays a duplicate.
    keys = [created["event_key"], updated["event_key"]]
    assert sorted(_outcomes(t, pid, 4)) == sorted([("echo", k) for k in keys] + [("duplicate", k) for k in keys])
    assert t.hub.pending_webhooks("twenty", "people", 10) == []
    skipped = _sensor_tick(t)
    assert isinstance(skipped, dg.SkipReason)

    twenty_store.client.update("people", pid, {"jobTitle": "Rear Admiral"})
    edit = _webhook_rows(t, pid, 3)[2]
    assert (edit["event"], edit["applied_at"]) == ("person.updated", None)  # a hint, as before
    requested = _sensor_tick(t)
    assert isinstance(requested, dg.SensorResult) and len(requested.run_requests or ()) == 1
    stats = sync_once(t.hub, stores, entities=[PEOPLE])
    assert stats[("capture", "twenty", "people")].hints == 1
    assert [p["job_title"] for p in people(t.supabase)] == ["Rear Admiral"]
    assert t.hub.pending_webhooks("twenty", "people", 10) == []


def _without(record: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != field}


@pytest.mark.parametrize("case", ["as held", "another job title", "soft-deleted", "no jobTitle", "no deletedAt",
                                  "e-mail not mapped"])
def test_only_a_record_exactly_as_held_is_an_echo(topology, twenty_store, case):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Grace", email="grace@navy.mil", job_title="Captain")
    sync_once(t.hub, [t.supabase, twenty_store], entities=[PEOPLE])
    held = t.hub.held_record("twenty", "people", pid)
    assert held is not None and held.seen_hash == held.content_hash
    record = twenty_store.client.get("people", pid)
    record = {
        "as held": record,
        "another job title": {**record, "jobTitle": "Commodore"},
        "soft-deleted": {**record, "deletedAt": record["updatedAt"]},
        "no jobTitle": _without(record, "jobTitle"),
        "no deletedAt": _without(record, "deletedAt"),
        "e-mail not mapped": {**record, "emails": {"additionalEmails": []}},
    }[case]
    digest = echoed_hash(PEOPLE, record, held.data, t.hub.id_map("twenty"))
    if case == "as held":
        assert digest == held.content_hash
    elif case == "another job title":
        assert digest is not None and digest != held.content_hash
    else:
        assert digest is None
