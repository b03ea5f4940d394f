"""Issue 14: a record no store should hold (a NUL character, a date past year 9999, a reference to a record
no store has) is quarantined, refused with its reason or kept as it is; it never stops its source, the
reconciliation or the checks, and is never silently changed."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from sync_pipeline import pipeline
from sync_pipeline.engine.records import CapturedChange, Op
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety.checks import Status
from sync_pipeline.model.canonical import parse_timestamp
from sync_pipeline.model.entities import entity
from sync_pipeline_tests.helpers import SETTINGS, insert_person, people, sync_once

PEOPLE, OPPORTUNITIES = entity("people"), entity("opportunities")
NUL_REASON = "first_name: contains a NUL character, which Postgres cannot store"


def _twenty_person(client, first: str, email: str) -> dict:
    return client.create("people", {"name": {"firstName": first, "lastName": "Hopper"},
                                    "emails": {"primaryEmail": email}})


def test_a_twenty_person_with_a_nul_is_quarantined_and_the_next_edit_is_captured_in_the_same_run(
        topology, twenty_store, twenty_client):
    t = topology
    stores = [twenty_store, t.supabase, t.local_db]
    poisoned = _twenty_person(twenty_client, "A\u0000da", "ada@example.com")
    grace = _twenty_person(twenty_client, "Grace", "grace@navy.mil")
    twenty_client.update("people", grace["id"], {"city": "Arlington"})  # edited after the poisoned one

    stats = sync_once(t.hub, stores)

    capture = stats[("capture", "twenty", "people")]
    assert (capture.read, capture.enqueued, capture.quarantined) == (2, 1, 1)
    assert [(p["first_name"], p["city"]) for p in people(t.supabase)] == [("Grace", "Arlington")]
    assert people(t.local_db) == people(t.supabase)
    with t.hub.connect() as conn:
        [q] = conn.execute("select record_id, reason, payload, failures from sync.quarantine").fetchall()
    assert q["record_id"] == poisoned["id"]
    assert q["reason"] == NUL_REASON + " (NUL characters shown as \\u0000)"
    assert q["payload"]["first_name"] == "A\\u0000da" and q["failures"][0]["failure_case"] == "A\\u0000da"
    updated_at = twenty_client.get("people", grace["id"])["updatedAt"]
    cursor = t.hub.get_cursor("twenty", "people")
    assert cursor is not None and parse_timestamp(cursor["watermark"]) >= parse_timestamp(updated_at)

    # The poisoned record is still there, and still does not stop the next edit.
    twenty_client.update("people", grace["id"], {"city": "New York"})
    sync_once(t.hub, stores)
    assert [p["city"] for p in people(t.supabase)] == ["New York"]
    with t.hub.connect() as conn:
        assert conn.execute("select count(*) as n from sync.quarantine where resolved_at is null"
                            ).fetchone()["n"] >= 1
    # Reconciliation reads it as invalid and goes on.
    assert twenty_store.inventory(PEOPLE)[poisoned["id"]] == f"invalid: {NUL_REASON}"
    assert pipeline.reconcile(t.hub, twenty_store, PEOPLE, "nightly", SETTINGS).new_in_store == 1


def _insert_opportunity(conn, **values) -> str:
    row = {"id": str(uuid.uuid4()), "name": "Deal", "stage": "NEW", **values}
    cols = sql.SQL(", ").join(map(sql.Identifier, row))
    marks = sql.SQL(", ").join(sql.Placeholder() * len(row))
    conn.execute(sql.SQL("insert into public.opportunities ({}) values ({})").format(cols, marks), list(row.values()))
    return row["id"]


def test_a_row_past_year_9999_is_quarantined_and_reconciliation_and_the_checks_still_run(four_stores, topology):
    t = topology
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("set time zone 'UTC'")
        far = _insert_opportunity(conn, name="Far", close_date="10000-01-01 00:00:00+00")
        near = _insert_opportunity(conn, name="Near", close_date="2030-01-01 00:00:00+00")
    stats = pipeline.capture(t.hub, t.local_db, OPPORTUNITIES, "run", SETTINGS)
    assert (stats.enqueued, stats.quarantined) == (1, 1)
    with t.hub.connect() as conn:
        [q] = conn.execute("select record_id, reason from sync.quarantine").fetchall()
    assert q["record_id"] == far and "close_date:" in q["reason"]

    result = four_stores.defs.resolve_job_def("reconciliation_job").execute_in_process(raise_on_error=False)
    assert result.success

    inventory = t.local_db.inventory(OPPORTUNITIES)
    assert inventory[far].startswith("invalid: close_date: ") and "years 1 to 9999" in inventory[far]
    assert not inventory[near].startswith("invalid")
    contract = safety.store_contract(t.local_db, OPPORTUNITIES, t.hub)
    assert contract.status is Status.WARN and "close_date" in contract.reason
    consistency = safety.consistency(t.local_db, OPPORTUNITIES, t.hub)
    assert consistency.status is not Status.FAIL and far in consistency.metadata["quarantined_ids"]


def test_a_reference_to_a_record_no_store_has_is_kept_where_it_can_be_and_waits_in_twenty(
        topology, twenty_store, twenty_client):
    t = topology
    stores = [twenty_store, t.supabase, t.local_db]
    nowhere = str(uuid.uuid4())
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Orphan", email="orphan@example.com", company_id=nowhere)

    for _ in range(2):  # a second run must not take anything back from Twenty as an edit
        stats = sync_once(t.hub, stores)
        assert [(str(p["id"]), str(p["company_id"])) for p in people(t.supabase)] == [(pid, nowhere)]
        assert [(str(p["id"]), str(p["company_id"])) for p in people(t.local_db)] == [(pid, nowhere)]
        assert stats[("publish", "twenty", "people")].errors == 1
        assert list(twenty_client.list("people")) == []
    with t.hub.connect() as conn:
        [golden] = conn.execute("select data from sync.golden where record_id = %s", (pid,)).fetchall()
        errors = conn.execute("""select message from sync.errors where store = 'twenty' and record_id = %s
                                 and resolved_at is null""", (pid,)).fetchall()
    assert golden["data"]["company_id"] == nowhere
    assert errors and all(f"company_id {nowhere}" in e["message"] for e in errors)


def test_a_change_the_hub_cannot_store_is_quarantined_alone_and_the_cursor_moves(topology):
    """The hub's own guard, for a value a contract might let through: the inbox refuses it alone."""
    now = datetime.now(timezone.utc)
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    changes = [CapturedChange(None, i, Op.UPSERT, {"first_name": name, "email": f"{name[0]}@example.com"}, now,
                              f"poll:{i}", None) for i, name in ((bad, "B\u0000ad"), (good, "Good"))]
    assert topology.hub.enqueue("twenty", "people", changes, [], {"watermark": "w1"}, "run") == 1
    with topology.hub.connect() as conn:
        inbox = conn.execute("select store_record_id from sync.inbox").fetchall()
        [q] = conn.execute("select record_id, reason, payload from sync.quarantine").fetchall()
    assert [r["store_record_id"] for r in inbox] == [good]
    assert q["record_id"] == bad and q["reason"].startswith("the hub cannot store it: ")
    assert q["payload"] == {"data": {"first_name": "B\\u0000ad", "email": "B@example.com"}}
    assert topology.hub.get_cursor("twenty", "people") == {"watermark": "w1"}
