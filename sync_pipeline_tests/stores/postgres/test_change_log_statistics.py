"""A bulk import leaves the change log's statistics behind: the capture analyzes it before reading, once, so
each page walks the index instead of sorting every change left (quadratic over a million-row import)."""

from __future__ import annotations

import time
import uuid

import psycopg

from sync_pipeline.model.entities import entity
from sync_pipeline.sandbox.postgres import PostgresServer
from sync_pipeline.stores.postgres import PostgresStore

PEOPLE = entity("people")


def _log_statistics(dsn: str) -> tuple[int, int]:
    """The change log's analyses so far, and its rows changed since the last one, as the server counts them."""
    with psycopg.connect(dsn) as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        row = conn.execute("""select analyze_count + autoanalyze_count, n_mod_since_analyze
                              from pg_stat_user_tables where relid = 'sync_cdc.change_log'::regclass""").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def test_a_capture_after_a_bulk_import_analyzes_the_change_log_once(postgres_server: PostgresServer) -> None:
    name = f"change_log_stats_{uuid.uuid4().hex[:8]}"
    dsn = postgres_server.create_database(name)
    try:
        store = PostgresStore("local_db", dsn)
        store.install()
        with psycopg.connect(dsn) as conn:
            conn.execute("""insert into public.people (id, first_name, last_name, email)
                            select gen_random_uuid(), 'P' || i, 'Person', 'p' || i || '@example.com'
                            from generate_series(1, 20000) i""")
        analyses, changed = _log_statistics(dsn)
        deadline = time.monotonic() + 120  # the server publishes a backend's counters within a second or so
        while changed < 20_000 and time.monotonic() < deadline:
            time.sleep(0.2)
            analyses, changed = _log_statistics(dsn)
        assert changed >= 20_000, f"the server counted {changed} changes to the change log"

        first = store.capture(PEOPLE, None, 100)
        assert len(first.changes) == 100 and first.more
        after_first = _log_statistics(dsn)
        assert after_first[0] == analyses + 1 and after_first[1] < 20_000  # analyzed, on the capture's read

        second = store.capture(PEOPLE, first.cursor, 100)
        assert len(second.changes) == 100
        assert _log_statistics(dsn)[0] == after_first[0]  # fresh statistics are not taken again
    finally:
        postgres_server.drop_database(name)
