"""Supabase and the local DB kept in sync through the hub, against a real PostgreSQL server."""

from __future__ import annotations

import psycopg

from sync_pipeline import pipeline
from sync_pipeline.model.entities import entity
from sync_pipeline.stores.base import live_hashes
from sync_pipeline_tests.helpers import SETTINGS, insert_person, people, sync_once

PEOPLE = entity("people")


def _counts(stats, stage):
    return {k: v for k, v in stats.items() if k[0] == stage}


def test_insert_update_delete_flow_from_supabase_to_local_db(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Grace", email="grace@navy.mil")
        other = insert_person(conn, first_name="Alan")
    sync_once(t.hub, [t.supabase, t.local_db])
    assert people(t.local_db) == people(t.supabase)
    assert {p["email"] for p in people(t.local_db)} >= {"grace@navy.mil"}

    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update people set job_title = 'Rear Admiral' where id = %s", (pid,))
        conn.execute("delete from people where id = %s", (other,))
    sync_once(t.hub, [t.supabase, t.local_db])
    rows = people(t.local_db)
    assert rows == people(t.supabase)
    assert [r["job_title"] for r in rows] == ["Rear Admiral"]


def test_changes_flow_from_local_db_to_supabase(topology):
    t = topology
    with psycopg.connect(t.local_dsn) as conn:
        pid = insert_person(conn, first_name="Katherine")
    sync_once(t.hub, [t.supabase, t.local_db])
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("update people set city = 'Hampton' where id = %s", (pid,))
    sync_once(t.hub, [t.supabase, t.local_db])
    assert people(t.supabase) == people(t.local_db)
    assert people(t.supabase)[0]["city"] == "Hampton"
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("delete from people where id = %s", (pid,))
    sync_once(t.hub, [t.supabase, t.local_db])
    assert people(t.supabase) == [] and people(t.local_db) == []


def test_second_run_captures_and_writes_nothing(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        insert_person(conn)
    sync_once(t.hub, [t.supabase, t.local_db])
    stats = sync_once(t.hub, [t.supabase, t.local_db])
    assert all(s.read == 0 for s in _counts(stats, "capture").values())
    assert all(s.read == 0 for s in _counts(stats, "publish").values())
    assert all(s.read == 0 for s in _counts(stats, "resolve").values())
    with psycopg.connect(t.local_dsn) as conn:
        # our own writes were not captured as new changes in the target (no echo)
        assert conn.execute("select count(*) from sync_cdc.change_log").fetchone()[0] == 0


def test_replaying_captured_changes_changes_nothing(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        insert_person(conn)
        insert_person(conn)
    # capture twice from the same cursor: the second capture is a replay
    cursor = t.hub.get_cursor("supabase", "people")
    batch = t.supabase.capture(PEOPLE, cursor, 100)
    changes, _ = pipeline.to_captured(PEOPLE, batch.changes, {})
    assert t.hub.enqueue("supabase", "people", changes, [], batch.cursor, "run-1") == 2
    assert t.hub.enqueue("supabase", "people", changes, [], batch.cursor, "run-2") == 0
    first = pipeline.resolve(t.hub, PEOPLE, "run-1", SETTINGS)
    assert first.applied == 2
    golden = t.hub.golden_snapshot("people")
    # a retried run that re-captures from the old cursor: nothing new, nothing changed
    with t.hub.connect() as conn:
        conn.execute("delete from sync.cursors")
    stats = pipeline.capture(t.hub, t.supabase, PEOPLE, "run-3", SETTINGS)
    assert stats.enqueued == 0
    assert pipeline.resolve(t.hub, PEOPLE, "run-3", SETTINGS).read == 0
    assert t.hub.golden_snapshot("people") == golden
    # even a change row put back in the inbox is refused by the processed-event ledger
    with t.hub.connect() as conn:
        conn.execute("update sync.inbox set applied_at = null")
    again = pipeline.resolve(t.hub, PEOPLE, "run-4", SETTINGS)
    assert (again.read, again.duplicates, again.applied) == (2, 2, 0)
    assert t.hub.golden_snapshot("people") == golden


def test_a_page_holding_new_and_replayed_changes_enqueues_the_new_ones_once(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        insert_person(conn)
        insert_person(conn)
    batch = t.supabase.capture(PEOPLE, None, 100)
    changes, _ = pipeline.to_captured(PEOPLE, batch.changes, {})
    assert t.hub.enqueue("supabase", "people", changes, [], None, "run-1") == 2  # new: straight in by COPY
    with psycopg.connect(t.supabase_dsn) as conn:
        insert_person(conn)
    batch = t.supabase.capture(PEOPLE, None, 100)  # the two again, and the new one
    changes, _ = pipeline.to_captured(PEOPLE, batch.changes, {})
    assert len(changes) == 3
    assert t.hub.enqueue("supabase", "people", changes, [], batch.cursor, "run-2") == 1
    with t.hub.connect() as conn:
        rows = conn.execute("select event_key, run_id from sync.inbox order by id").fetchall()
    assert sorted(r["event_key"] for r in rows) == sorted(c.event_key for c in changes)
    assert [r["run_id"] for r in rows] == ["run-1", "run-1", "run-2"]


def test_transaction_that_took_its_xid_first_and_commits_last_is_not_skipped(topology):
    t = topology
    early = psycopg.connect(t.supabase_dsn)
    late = psycopg.connect(t.supabase_dsn, autocommit=True)
    try:
        early.execute("select pg_current_xact_id()")  # takes its xid first
        first = insert_person(early, first_name="Early")
        second = insert_person(late, first_name="Late")  # commits at once
        stats = pipeline.capture(t.hub, t.supabase, PEOPLE, "r1", SETTINGS)
        assert stats.read == 0  # the watermark holds back everything behind the open transaction
        early.commit()
        pipeline.capture(t.hub, t.supabase, PEOPLE, "r2", SETTINGS)
    finally:
        early.close()
        late.close()
    pipeline.resolve(t.hub, PEOPLE, "r2", SETTINGS)
    assert set(t.hub.golden_snapshot("people")) == {first, second}


def test_concurrent_edit_in_both_stores_has_one_winner_and_one_conflict_row(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Ada", city="London")
    sync_once(t.hub, [t.supabase, t.local_db])
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update people set city = 'Paris' where id = %s", (pid,))
    with psycopg.connect(t.local_dsn) as conn:  # later, so it wins
        conn.execute("update people set city = 'Berlin', job_title = 'Analyst' where id = %s", (pid,))
    sync_once(t.hub, [t.supabase, t.local_db])
    assert people(t.supabase) == people(t.local_db)
    assert people(t.supabase)[0]["city"] == "Berlin"
    assert people(t.supabase)[0]["job_title"] == "Analyst"
    with t.hub.connect() as conn:
        conflicts = conn.execute("select * from sync.conflicts").fetchall()
    assert len(conflicts) == 1
    c = conflicts[0]
    assert c["winner_store"] == "local_db" and c["differing_fields"] == ["city", "job_title"]
    assert c["golden_side"]["data"]["city"] == "Paris" and c["incoming_side"]["data"]["city"] == "Berlin"
    # a further run is quiet: the loser was overwritten without a new conflict
    sync_once(t.hub, [t.supabase, t.local_db])
    with t.hub.connect() as conn:
        assert conn.execute("select count(*) as n from sync.conflicts").fetchone()["n"] == 1


def test_disjoint_field_edits_merge(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn)
    sync_once(t.hub, [t.supabase, t.local_db])
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update people set city = 'Paris' where id = %s", (pid,))
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("update people set job_title = 'CTO' where id = %s", (pid,))
    sync_once(t.hub, [t.supabase, t.local_db])
    row = people(t.local_db)[0]
    assert (row["city"], row["job_title"]) == ("Paris", "CTO")
    assert people(t.supabase) == people(t.local_db)


def test_invalid_records_are_quarantined_and_the_rest_applied(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        good = insert_person(conn, first_name="Good")
        no_name = insert_person(conn, first_name=None)
        bad_email = insert_person(conn, email="not-an-email")
    stats = sync_once(t.hub, [t.supabase, t.local_db])
    assert stats[("capture", "supabase", "people")].quarantined == 2
    assert [p["id"] for p in people(t.local_db)] == [good]
    with t.hub.connect() as conn:
        rows = {r["record_id"]: r["reason"] for r in conn.execute("select * from sync.quarantine")}
    assert rows[no_name] == "first_name: required field is missing"
    assert rows[bad_email] == "email: 'not-an-email' is not a well-formed e-mail address"
    # fixing the record in its store lets it through
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update people set email = 'fixed@example.com' where id = %s", (bad_email,))
    sync_once(t.hub, [t.supabase, t.local_db])
    assert len(people(t.local_db)) == 2
    with t.hub.connect() as conn:
        open_rows = conn.execute("select record_id from sync.quarantine where resolved_at is null").fetchall()
    assert [r["record_id"] for r in open_rows] == [no_name]  # the fixed one left quarantine


def test_the_same_person_created_in_both_stores_is_linked_not_duplicated(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        in_supabase = insert_person(conn, first_name="Ada", email="ada@example.com")
    with psycopg.connect(t.local_dsn) as conn:
        in_local = insert_person(conn, first_name="Ada", email="ADA@example.com", city="London")
    sync_once(t.hub, [t.supabase, t.local_db])
    assert len(t.hub.golden_snapshot("people")) == 1
    [supabase_row], [local_row] = people(t.supabase), people(t.local_db)
    # each store keeps its own row and id; the hub maps them to one record
    assert (str(supabase_row["id"]), str(local_row["id"])) == (in_supabase, in_local)
    assert supabase_row["city"] == local_row["city"] == "London"
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("update people set job_title = 'Analyst' where id = %s", (in_local,))
    sync_once(t.hub, [t.supabase, t.local_db])
    assert people(t.supabase)[0]["job_title"] == "Analyst"
    assert t.supabase.inventory(PEOPLE) == t.local_db.inventory(PEOPLE) == live_hashes(PEOPLE, t.hub.golden_snapshot("people"))


def test_two_rows_of_one_store_sharing_an_email_quarantine_the_second(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        first = insert_person(conn, email="dup@example.com")
        second = insert_person(conn, email="dup@example.com")
    stats = sync_once(t.hub, [t.supabase, t.local_db])
    assert stats[("resolve", "people")].quarantined == 1
    assert [str(p["id"]) for p in people(t.local_db)] == [first]
    with t.hub.connect() as conn:
        [row] = conn.execute("select record_id, reason from sync.quarantine").fetchall()
    assert row["record_id"] == second
    assert row["reason"] == f"email 'dup@example.com' already belongs to record {first}"


def test_a_batch_that_looks_new_but_holds_an_existing_row_falls_back_to_the_guarded_upsert(topology):
    from datetime import datetime, timezone

    from sync_pipeline.engine.records import GoldenRecord
    from sync_pipeline.model.canonical import content_hash

    def golden(i: int, version: int, name: str) -> GoldenRecord:
        data = {f: None for f in PEOPLE.field_names} | {"first_name": name, "email": f"p{i}@example.com"}
        return GoldenRecord("people", str(__import__("uuid").UUID(int=i + 1)), version, data, False,
                            content_hash(data), "supabase", datetime(2026, 1, 1, tzinfo=timezone.utc))

    # the last record exists already, newer: beyond the sample that decides on the direct COPY
    topology.local_db.apply(PEOPLE, [golden(1499, 5, "newer")])
    result = topology.local_db.apply(PEOPLE, [golden(i, 1, "batch") for i in range(1500)])
    assert result.stale == [golden(1499, 1, "x").record_id]
    assert len(result.applied) == 1499
    rows = {str(r["id"]): r["first_name"] for r in people(topology.local_db)}
    assert len(rows) == 1500 and rows[golden(1499, 1, "x").record_id] == "newer"
    with psycopg.connect(topology.local_dsn) as conn:
        assert conn.execute("select count(*) from sync_cdc.change_log").fetchone()[0] == 0


def test_a_mixed_batch_updates_newer_rows_inserts_new_ones_and_reports_stale_ones(topology):
    from datetime import datetime, timezone

    from sync_pipeline.engine.records import GoldenRecord
    from sync_pipeline.model.canonical import content_hash

    def golden(i: int, version: int, name: str) -> GoldenRecord:
        data = {f: None for f in PEOPLE.field_names} | {"first_name": name, "email": f"p{i}@example.com"}
        return GoldenRecord("people", str(__import__("uuid").UUID(int=i + 1)), version, data, False,
                            content_hash(data), "supabase", datetime(2026, 1, 1, tzinfo=timezone.utc))

    store = topology.local_db
    store.apply(PEOPLE, [golden(0, 1, "old"), golden(1, 5, "newer")])
    result = store.apply(PEOPLE, [golden(0, 2, "updated"), golden(1, 3, "stale"), golden(2, 1, "new")])
    assert sorted(result.applied) == sorted([golden(0, 1, "").record_id, golden(2, 1, "").record_id])
    assert result.stale == [golden(1, 1, "").record_id]
    assert [p["first_name"] for p in people(store)] == ["updated", "newer", "new"]
    replay = store.apply(PEOPLE, [golden(0, 2, "updated"), golden(2, 1, "new")])
    assert replay.applied == [] and len(replay.stale) == 2
