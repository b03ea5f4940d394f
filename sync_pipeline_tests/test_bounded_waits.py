"""Bounded waits: every statement against a Postgres store runs under a lock and a statement timeout, so an
application holding a row lock delays that row only. The run ends in bounded time, the rest of the batch
is written, the locked record is recorded as an error with its reason, and the next run writes it."""

from __future__ import annotations

import time

import psycopg

from sync_pipeline.model.entities import entity
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.postgres.store import LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS
from sync_pipeline_tests.helpers import insert_person, people, sync_once

PEOPLE = entity("people")


def _open_errors(topology, store: str) -> list[dict]:
    with topology.hub.connect() as conn:
        return conn.execute("""select record_id, operation, error_class, message from sync.errors
                               where store = %s and resolved_at is null order by id""", (store,)).fetchall()


def _first_names(store) -> dict[str, str]:
    return {str(p["id"]): p["first_name"] for p in people(store)}


def test_every_connection_to_a_store_runs_under_the_timeouts(topology):
    for store in (topology.local_db,
                  PostgresStore("supabase", topology.supabase_dsn,
                                lock_timeout_ms=1_234, statement_timeout_ms=56_789)):
        expected = ("5s", "5min") if store is topology.local_db else ("1234ms", "56789ms")
        with store.connect() as conn:
            row = conn.execute("select current_setting('lock_timeout') as lock,"
                               " current_setting('statement_timeout') as statement").fetchone()
        assert (row["lock"], row["statement"]) == expected
    assert (LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS) == (5_000, 300_000)


def test_a_row_locked_by_an_application_delays_that_record_only(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        locked, free = insert_person(conn, first_name="Locked"), insert_person(conn, first_name="Free")
    sync_once(t.hub, [t.supabase, t.local_db])
    assert _first_names(t.local_db) == {locked: "Locked", free: "Free"}

    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update public.people set first_name = first_name || ' v2' where id = any(%s::uuid[])",
                     ([locked, free],))
    app = psycopg.connect(t.local_dsn)  # an application's transaction holding the row lock
    try:
        app.execute("select * from public.people where id = %s for update", (locked,))
        started = time.monotonic()
        stats = sync_once(t.hub, [t.supabase, t.local_db])
        elapsed = time.monotonic() - started
        assert elapsed < 60, f"the run waited {elapsed:.0f} s on the lock"
        assert _first_names(t.local_db) == {locked: "Locked", free: "Free v2"}
        publish = stats[("publish", "local_db", "people")]
        assert (publish.applied, publish.errors) == (1, 1)
        [error] = _open_errors(t, "local_db")
        assert (error["record_id"], error["operation"], error["error_class"]) == (locked, "publish", "RowLocked")
        assert "row locked by another transaction" in error["message"]
        assert "retried next run" in error["message"]
        # the app's transaction was not disturbed: it still holds its lock and can write
        app.execute("update public.people set last_name = 'App' where id = %s", (locked,))
    finally:
        app.rollback()
        app.close()

    sync_once(t.hub, [t.supabase, t.local_db])
    assert _first_names(t.local_db) == {locked: "Locked v2", free: "Free v2"}
    assert _open_errors(t, "local_db") == []


def test_a_delete_of_a_locked_row_waits_for_the_next_run_and_the_other_deletes_go_through(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        locked, free = insert_person(conn), insert_person(conn)
    sync_once(t.hub, [t.supabase, t.local_db])
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("delete from public.people where id = any(%s::uuid[])", ([locked, free],))
    with psycopg.connect(t.local_dsn) as app:
        app.execute("select * from public.people where id = %s for update", (locked,))
        sync_once(t.hub, [t.supabase, t.local_db])
        assert set(_first_names(t.local_db)) == {locked}
        [error] = _open_errors(t, "local_db")
        assert (error["record_id"], error["error_class"]) == (locked, "RowLocked")
        app.rollback()
    sync_once(t.hub, [t.supabase, t.local_db])
    assert _first_names(t.local_db) == {}
    assert _open_errors(t, "local_db") == []
