"""Destroys in Twenty (issue 14, item 6): a hard delete leaves nothing to poll, so it reaches the other stores
through its `*.destroyed` webhook, dated by the event, or else through the periodic listing of ids, dated when
the listing saw the record missing; last write wins against edits made elsewhere, and a destroyed record that
loses is recreated in Twenty. Over real HTTP (the stand-in, the webhook receiver), on the real Postgres stores
and the BigQuery emulator; each test ends with every store compared with the hub."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg
import pytest

from sync_pipeline import pipeline
from sync_pipeline.model.canonical import parse_timestamp
from sync_pipeline.model.entities import entity
from sync_pipeline.stores.base import Store
from sync_pipeline.stores.twenty.store import TwentyStore
from sync_pipeline_tests.faults.helpers import assert_stores_match_hub, sync_all
from sync_pipeline_tests.helpers import SETTINGS, insert_person, people

PEOPLE = entity("people")
NEVER_DUE = timedelta(hours=1)  # the listing runs at the first capture, then not again in the test


def _twenty(topology, client, interval: timedelta = NEVER_DUE) -> TwentyStore:
    return TwentyStore(client, topology.hub.id_map(TwentyStore.name), id_listing_interval=interval)


def _wait_for_hint(topology, event_name: str, record_id: str) -> dict:
    """The webhook hint the receiver stored for an event of a record."""
    deadline = time.monotonic() + 120  # the wait ends once the hint is in; room for a loaded machine
    while True:
        with topology.hub.connect() as conn:
            row = conn.execute("""select payload, received_at from sync.inbox where kind = 'webhook'
                                  and store_record_id = %s and payload->>'eventName' = %s""",
                               (record_id, event_name)).fetchone()
        if row:
            return row
        assert time.monotonic() < deadline, f"no {event_name} webhook for {record_id} reached the inbox"
        time.sleep(0.1)


def _golden(topology, record_id: str) -> dict:
    with topology.hub.connect() as conn:
        return conn.execute("select * from sync.golden where record_id = %s", (record_id,)).fetchone()


def _person_in_every_store(topology, twenty: TwentyStore, stores: Sequence[Store]) -> str:
    """A person created in Supabase and synced until every store holds it and Twenty's echoes are read."""
    with psycopg.connect(topology.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Edsger", email="ewd@example.com", job_title="Professor")
    sync_all(topology.hub, stores)
    sync_all(topology.hub, stores)
    assert twenty.client.get("people", pid)["jobTitle"] == "Professor"
    return pid


def _person_linked_by_email(topology, twenty: TwentyStore, stores: Sequence[Store]) -> tuple[str, str]:
    """A person Twenty had under an id of its own when Supabase created it with the same e-mail: the hub knows
    it under Supabase's id and maps Twenty's to it. Returns (canonical id, Twenty id)."""
    twenty_id = twenty.client.create("people", {"name": {"firstName": "Edsger"},
                                                "emails": {"primaryEmail": "ewd@example.com"}})["id"]
    with psycopg.connect(topology.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Edsger", email="ewd@example.com", job_title="Professor")
    pipeline.capture(topology.hub, topology.supabase, PEOPLE, "link", SETTINGS)
    pipeline.resolve(topology.hub, PEOPLE, "link", SETTINGS)
    pipeline.publish(topology.hub, twenty, PEOPLE, "link", SETTINGS)  # the upsert matches the e-mail
    sync_all(topology.hub, stores)
    sync_all(topology.hub, stores)
    assert topology.hub.store_ids_for("twenty", "people", [pid]) == {pid: twenty_id} != {pid: pid}
    assert twenty.client.get("people", twenty_id)["jobTitle"] == "Professor"
    return pid, twenty_id


def _edit_in_supabase(topology, pid: str, job_title: str) -> datetime:
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("update people set job_title = %s where id = %s", (job_title, pid))
        return conn.execute("select now() as t").fetchone()[0]


def test_a_destroy_with_its_webhook_is_deleted_everywhere_at_the_next_sync_dated_by_the_event(
        topology, twenty_client, bigquery_store, person_webhook):
    t = topology
    twenty = _twenty(t, twenty_client)
    stores = [t.local_db, t.supabase, twenty, bigquery_store]
    pid = _person_in_every_store(t, twenty, stores)
    listing = t.hub.get_cursor("twenty", "people")["ids_listed_at"]

    twenty_client.destroy("people", pid)
    hint = _wait_for_hint(t, "person.destroyed", pid)
    stats = sync_all(t.hub, stores)

    capture = stats[("capture", "twenty", "people")]
    assert capture.hints >= 1 and capture.status["ids_listed_at"] == listing  # the webhook did it, no listing
    assert people(t.supabase) == [] and people(t.local_db) == [] and people(bigquery_store) == []
    golden = _golden(t, pid)
    assert golden["deleted"] and golden["origin_store"] == "twenty"
    # dated by the event, not by the sync that re-read it
    assert golden["origin_modified_at"] == parse_timestamp(hint["payload"]["eventDate"])
    assert_stores_match_hub(t.hub, stores)


def test_a_destroy_whose_webhook_is_lost_is_deleted_at_the_next_sync_after_the_id_listing(
        topology, twenty_client, bigquery_store):
    t = topology  # no webhook registered: every delivery is lost
    twenty = _twenty(t, twenty_client)
    stores = [t.local_db, t.supabase, twenty, bigquery_store]
    pid = _person_in_every_store(t, twenty, stores)
    first_listing = t.hub.get_cursor("twenty", "people")["ids_listed_at"]

    twenty_client.destroy("people", pid)
    destroyed_at = datetime.now().astimezone()
    sync_all(t.hub, stores)  # the listing is not due yet: nothing can tell the sync of the destroy
    assert [str(p["id"]) for p in people(t.supabase)] == [pid]
    assert t.hub.get_cursor("twenty", "people")["ids_listed_at"] == first_listing  # at most once an interval

    twenty_due = _twenty(t, twenty_client, interval=timedelta(0))  # the interval has passed
    stats = sync_all(t.hub, [t.local_db, t.supabase, twenty_due, bigquery_store])

    status = stats[("capture", "twenty", "people")].status
    assert status["ids_vanished"] == 1 and status["ids_listed_at"] > first_listing
    assert people(t.supabase) == [] and people(t.local_db) == [] and people(bigquery_store) == []
    golden = _golden(t, pid)
    assert golden["deleted"] and golden["origin_store"] == "twenty"
    # dated when the listing first saw it missing: the best evidence without the webhook
    assert golden["origin_modified_at"] == parse_timestamp(status["ids_listed_at"]) > destroyed_at
    assert_stores_match_hub(t.hub, stores)


@pytest.mark.parametrize("twenty_has_its_own_id", [False, True], ids=["same id", "linked by e-mail"])
def test_an_edit_elsewhere_after_a_destroy_wins_and_the_record_is_recreated_in_twenty(
        topology, twenty_client, bigquery_store, person_webhook, twenty_has_its_own_id):
    t = topology
    twenty = _twenty(t, twenty_client)
    stores = [t.local_db, t.supabase, twenty, bigquery_store]
    if twenty_has_its_own_id:
        pid, twenty_id = _person_linked_by_email(t, twenty, stores)
    else:
        pid = twenty_id = _person_in_every_store(t, twenty, stores)

    twenty_client.destroy("people", twenty_id)  # T1
    hint = _wait_for_hint(t, "person.destroyed", twenty_id)
    time.sleep(0.01)
    edited_at = _edit_in_supabase(t, pid, "Turing laureate")  # T2 > T1
    assert edited_at > parse_timestamp(hint["payload"]["eventDate"])
    stats = sync_all(t.hub, stores)

    assert stats[("resolve", "people")].conflicts == 1
    with t.hub.connect() as conn:
        [conflict] = conn.execute("select * from sync.conflicts where record_id = %s", (pid,)).fetchall()
    assert conflict["winner_store"] == "supabase"
    for rows in (people(t.supabase), people(t.local_db), people(bigquery_store)):
        assert [(str(p["id"]), p["job_title"]) for p in rows] == [(pid, "Turing laureate")]
    # recreated in Twenty, and the id map leads from Twenty's record to the same canonical record
    [recreated] = list(twenty_client.list("people"))
    assert recreated["jobTitle"] == "Turing laureate"
    assert t.hub.record_ids_for("twenty", "people", [recreated["id"]]).get(recreated["id"], recreated["id"]) \
        == pid
    golden = _golden(t, pid)
    assert not golden["deleted"] and golden["data"]["job_title"] == "Turing laureate"

    settled = sync_all(t.hub, stores)  # Twenty's echo of the recreation is no new edit
    assert settled[("resolve", "people")].applied == 0
    assert _golden(t, pid)["version"] == golden["version"]
    assert_stores_match_hub(t.hub, stores)


def test_a_destroy_whose_webhook_is_late_is_not_undone_by_a_publish_and_is_dated_by_its_event(
        topology, twenty_client, bigquery_store, held_person_webhook):
    t = topology
    twenty = _twenty(t, twenty_client)
    stores = [t.local_db, t.supabase, twenty, bigquery_store]
    pid = _person_in_every_store(t, twenty, stores)
    held_person_webhook.hold("person.destroyed")

    twenty_client.destroy("people", pid)  # T1, its webhook held back
    time.sleep(0.01)
    _edit_in_supabase(t, pid, "Turing laureate")  # T2 > T1
    early = sync_all(t.hub, stores)  # the edit is published before the destroy is read
    early_ended_at = datetime.now().astimezone()

    assert list(twenty_client.list("people")) == []  # not recreated unread
    publish = early[("publish", "twenty", "people")]
    assert publish.errors == 1 and "destroyed in Twenty since the hub last read it" in publish.error_messages[0]
    assert held_person_webhook.release() == 1  # the destroy's webhook arrives now, after that sync
    hint = _wait_for_hint(t, "person.destroyed", pid)
    assert parse_timestamp(hint["payload"]["eventDate"]) < early_ended_at < hint["received_at"]
    nxt = sync_all(t.hub, stores)  # the destroy, dated by its event, loses to the later edit

    assert nxt[("resolve", "people")].conflicts == 1
    for rows in (people(t.supabase), people(t.local_db), people(bigquery_store), people(twenty)):
        assert [(str(p["id"]), p["job_title"]) for p in rows] == [(pid, "Turing laureate")]
    sync_all(t.hub, stores)
    assert_stores_match_hub(t.hub, stores)


def test_an_edit_elsewhere_before_a_destroy_loses_to_it(topology, twenty_client, bigquery_store,
                                                        person_webhook):
    t = topology
    twenty = _twenty(t, twenty_client)
    stores = [t.local_db, t.supabase, twenty, bigquery_store]
    pid = _person_in_every_store(t, twenty, stores)

    edited_at = _edit_in_supabase(t, pid, "Turing laureate")  # T1
    time.sleep(0.01)
    twenty_client.destroy("people", pid)  # T2 > T1
    hint = _wait_for_hint(t, "person.destroyed", pid)
    assert parse_timestamp(hint["payload"]["eventDate"]) > edited_at
    stats = sync_all(t.hub, stores)

    assert stats[("resolve", "people")].conflicts == 1
    with t.hub.connect() as conn:
        [conflict] = conn.execute("select * from sync.conflicts where record_id = %s", (pid,)).fetchall()
    assert conflict["winner_store"] == "twenty"
    assert people(t.supabase) == [] and people(t.local_db) == [] and people(bigquery_store) == []
    assert list(twenty_client.list("people")) == []
    assert _golden(t, pid)["deleted"]
    assert_stores_match_hub(t.hub, stores)


def test_a_listing_that_finds_too_many_records_destroyed_at_once_deletes_nothing(topology, twenty_client):
    t = topology  # eleven of eleven gone at once looks like a listing gone wrong, not like eleven destroys
    twenty = _twenty(t, twenty_client)
    stores = [t.local_db, t.supabase, twenty]
    with psycopg.connect(t.supabase_dsn) as conn:
        ids = [insert_person(conn, first_name=f"Held{n}") for n in range(11)]
    sync_all(t.hub, stores)
    for pid in ids:
        twenty_client.destroy("people", pid)

    stats = sync_all(t.hub, [t.local_db, t.supabase, _twenty(t, twenty_client, interval=timedelta(0))])

    status = stats[("capture", "twenty", "people")].status
    assert status["ids_vanished"] == 11 and status["ids_vanished_refused"] == 11
    assert sorted(str(p["id"]) for p in people(t.supabase)) == sorted(ids)
    assert not any(data is None for _, data in t.hub.golden_snapshot("people").values())
