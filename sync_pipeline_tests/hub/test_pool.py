"""The hub's resource owns a connection pool for the run: few connections, every statement bounded."""

from __future__ import annotations

import time

import dagster as dg
import psycopg
import pytest

from sync_pipeline.defs.resources import HubResource


def _sessions(server, database: str) -> int:
    """Sessions ever established to the database (ended ones report on exit)."""
    time.sleep(1.5)
    with psycopg.connect(server.dsn()) as conn:
        return conn.execute("select sessions from pg_stat_database where datname = %s",
                            (database,)).fetchone()[0]  # type: ignore[index]


def test_a_runs_hub_work_shares_the_resources_pool_and_closes_it(topology):
    database = topology.local_dsn.rsplit("/", 1)[1]
    before = _sessions(topology.server, database)
    with dg.build_resources({"hub": HubResource(dsn=topology.local_dsn)}) as resources:
        for n in range(30):  # sixty units of work, each through a hub of its own, as a sync's steps make them
            resources.hub.hub().start_run(f"run-{n}", "test")
            assert resources.hub.hub().get_cursor("local_db", "people") is None
    # The migration's own connection and the pool's one.
    assert _sessions(topology.server, database) - before == 2
    with psycopg.connect(topology.local_dsn) as conn:
        assert conn.execute("select count(*) from sync.runs").fetchone()[0] == 30  # type: ignore[index]
        open_now = conn.execute("select count(*) from pg_stat_activity where datname = %s and pid <> "
                                "pg_backend_pid()", (database,)).fetchone()[0]  # type: ignore[index]
    assert open_now == 0  # the pool was closed with the resource


def test_every_hub_statement_runs_bounded_and_unprepared(topology):
    resource = HubResource(dsn=topology.local_dsn, lock_timeout_ms=1234, statement_timeout_ms=56789)
    with dg.build_resources({"hub": resource}) as resources:
        with resources.hub.hub().connect() as conn:
            assert conn.execute("show lock_timeout").fetchone() == {"lock_timeout": "1234ms"}
            assert conn.execute("show statement_timeout").fetchone() == {"statement_timeout": "56789ms"}
            assert conn.prepare_threshold is None  # transaction poolers cannot keep prepared statements
    # Local to each transaction: a pooled connection hands no setting on.
    with psycopg.connect(topology.local_dsn) as conn:
        assert conn.execute("show lock_timeout").fetchone() == ("0",)


def test_a_lock_held_longer_than_the_hubs_lock_timeout_fails_the_statement(topology):
    hub = HubResource(dsn=topology.local_dsn, lock_timeout_ms=200).hub()
    hub.start_run("locked", "test")
    with psycopg.connect(topology.local_dsn) as holder:
        holder.execute("select * from sync.runs where run_id = 'locked' for update")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            hub.finish_run("locked", "success")
        assert time.monotonic() - started < 5
