"""Bookkeeping that tells the truth: an error closes once its record is found at the right version in the
store, a quarantined record is one open row however often it is seen, and the rate-limit check judges only
what is still failing. Real hub and Postgres stores throughout."""

from __future__ import annotations

import psycopg
import pytest

from sync_pipeline import pipeline
from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.hub import migrations
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.entities import entity
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety.checks import Status
from sync_pipeline.settings import Thresholds
from sync_pipeline.stores.twenty.errors import TwentyRateLimited
from sync_pipeline.stores.twenty.spec import TWENTY
from sync_pipeline_tests.helpers import SETTINGS, insert_person, sync_once

PEOPLE = entity("people")


def _open_errors(hub: Hub, store: str) -> dict[int, str | None]:
    with hub.connect() as conn:
        return {r["id"]: r["record_id"] for r in conn.execute(
            "select id, record_id from sync.errors where store = %s and resolved_at is null", (store,))}


def _edited_in_local_db(topology, *names: str) -> dict[str, GoldenRecord]:
    """People created in the local DB and synced, then edited there and resolved: their new golden versions,
    not yet published to Supabase, by first name."""
    with psycopg.connect(topology.local_dsn) as conn:
        ids = {name: insert_person(conn, first_name=name) for name in names}
    sync_once(topology.hub, [topology.local_db, topology.supabase])
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("update people set city = 'Paris' where id = any(%s::uuid[])", (list(ids.values()),))
    pipeline.capture(topology.hub, topology.local_db, PEOPLE, "edit", SETTINGS)
    pipeline.resolve(topology.hub, PEOPLE, "edit", SETTINGS)
    unseen = {g.record_id: g for g in topology.hub.unseen_by("supabase", "people", 100)}
    return {name: unseen[record_id] for name, record_id in ids.items()}


def _failed_although_landed(topology, records: list[GoldenRecord]) -> list[int]:
    """The write reached Supabase but its request failed: the store holds the records, the hub an error."""
    result = topology.supabase.apply(PEOPLE, records)
    assert sorted(result.applied) == sorted(g.record_id for g in records)
    reset = ConnectionResetError("connection reset by peer")
    return [topology.hub.record_error(store="supabase", entity="people", record_id=g.record_id,
                                      operation="publish", run_id="storm", error=reset) for g in records]


def test_reconciliation_closes_the_error_of_a_write_that_landed_and_keeps_the_others(topology):
    hub = topology.hub
    edited = _edited_in_local_db(topology, "Landed", "Also", "Missing")
    landed, also, missing = edited["Landed"], edited["Also"], edited["Missing"]
    _failed_although_landed(topology, [landed, also])
    missing_error = hub.record_error(store="supabase", entity="people", record_id=missing.record_id,
                                     operation="publish", run_id="storm", error=TimeoutError("timed out"))
    batch_landed = hub.record_error(store="supabase", entity="people", operation="publish", run_id="storm",
                                    error=TimeoutError("batch timed out"),
                                    record_ids=[landed.record_id, also.record_id])
    batch_partial = hub.record_error(store="supabase", entity="people", operation="publish", run_id="storm",
                                     error=TimeoutError("batch timed out"),
                                     record_ids=[landed.record_id, missing.record_id])

    stats = pipeline.reconcile(hub, topology.supabase, PEOPLE, "nightly", SETTINGS)

    assert stats.resent == 1  # only the record Supabase holds at an older version
    assert set(_open_errors(hub, "supabase")) == {missing_error, batch_partial}
    assert batch_landed not in _open_errors(hub, "supabase")
    sync_once(hub, [topology.local_db, topology.supabase])  # the re-sent version lands: the rest closes
    assert _open_errors(hub, "supabase") == {}


def test_publish_closes_the_errors_of_records_the_store_already_holds(topology):
    hub = topology.hub
    [landed] = _edited_in_local_db(topology, "Landed").values()
    [record_error] = _failed_although_landed(topology, [landed])

    stats = pipeline.publish(hub, topology.supabase, PEOPLE, "retry", SETTINGS)

    assert (stats.stale, stats.applied, stats.errors) == (1, 0, 0)  # the store had that version already
    assert record_error not in _open_errors(hub, "supabase")


def _quarantine_rows(hub: Hub, record_id: str) -> list[dict]:
    with hub.connect() as conn:
        return conn.execute("""select event_key, reason, times_seen, quarantined_at, last_seen_at, resolved_at
                               from sync.quarantine where store = 'local_db' and record_id = %s""",
                            (record_id,)).fetchall()


def test_a_quarantined_record_is_one_row_however_often_it_is_seen(topology):
    hub = topology.hub
    with psycopg.connect(topology.local_dsn) as conn:
        bad = insert_person(conn, first_name="Bad", email="not-an-email")
    stats = sync_once(hub, [topology.local_db, topology.supabase])
    assert stats[("capture", "local_db", "people")].quarantined == 1
    for n in range(3):
        pipeline.reconcile(hub, topology.local_db, PEOPLE, f"nightly-{n}", SETTINGS)

    [row] = _quarantine_rows(hub, bad)
    assert row["resolved_at"] is None and row["times_seen"] == 4  # capture and three reconciliations
    assert row["last_seen_at"] > row["quarantined_at"]
    assert row["reason"] == "email: 'not-an-email' is not a well-formed e-mail address"
    assert hub.open_quarantine("local_db", "people") == 1
    sync_once(hub, [topology.local_db, topology.supabase])  # a replayed sighting adds nothing either
    assert hub.open_quarantine("local_db", "people") == 1

    with psycopg.connect(topology.local_dsn) as conn:  # fixed at its source
        conn.execute("update people set email = 'bad@example.com' where id = %s", (bad,))
    sync_once(hub, [topology.local_db, topology.supabase])
    assert [r["resolved_at"] is not None for r in _quarantine_rows(hub, bad)] == [True]
    assert bad in {str(p["id"]) for p in topology.supabase.rows(PEOPLE)}


def test_the_migration_collapses_the_open_rows_of_a_record_into_one(postgres_server, monkeypatch):
    dsn = postgres_server.create_database("bookkeeping_migration")
    try:
        hub = Hub(dsn)
        monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
        hub.migrate()
        with hub.connect() as conn:
            for n, (record_id, resolved) in enumerate([("a", False), ("a", False), ("a", False), ("a", True),
                                                       ("b", False), (None, False), (None, False)]):
                conn.execute(
                    """insert into sync.quarantine (store, entity, record_id, event_key, reason, failures,
                                                    payload, quarantined_at, resolved_at)
                       values ('local_db', 'people', %s, %s, %s, '[]', '{}',
                               now() - make_interval(days => %s), case when %s then now() end)""",
                    (record_id, f"reconcile:{n}", f"reason {n}", 10 - n, resolved))
        monkeypatch.undo()
        assert hub.migrate() == [v for v, _, _ in migrations.MIGRATIONS[3:]]
        with hub.connect() as conn:
            rows = conn.execute(
                """select record_id, reason, times_seen, quarantined_at < last_seen_at as spans
                   from sync.quarantine where resolved_at is null order by record_id, id""").fetchall()
        assert [(r["record_id"], r["reason"], r["times_seen"], r["spans"]) for r in rows] == [
            ("a", "reason 2", 3, True), ("b", "reason 4", 1, False), (None, "reason 5", 1, False),
            (None, "reason 6", 1, False)]
    finally:
        postgres_server.drop_database("bookkeeping_migration")


@pytest.fixture
def person(topology) -> GoldenRecord:
    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn)
    sync_once(topology.hub, [topology.local_db, topology.supabase])
    [golden] = topology.hub.unseen_by("twenty", "people", 10)  # Twenty is not part of this topology
    return golden


def test_rate_limits_fail_on_an_open_rate_limit_error_and_not_once_its_record_landed(topology, person):
    hub, limits = topology.hub, Thresholds()
    hub.start_run("storm", "schedule")
    assert safety.rate_limits(hub, TWENTY, limits).status is Status.PASS
    hub.record_error(store="twenty", entity="people", record_id=person.record_id, operation="publish",
                     run_id="storm", error=TwentyRateLimited("rate limit exceeded", status=429))
    verdict = safety.rate_limits(hub, TWENTY, limits)
    assert verdict.status is Status.FAIL and verdict.metadata["rate_limit_failures"] == 1

    # the write landed after all: found in Twenty at the golden version, its error closes
    assert hub.close_errors_of_held("twenty", "people", {person.record_id: person.version}) == 1
    verdict = safety.rate_limits(hub, TWENTY, limits)
    assert verdict.status in (Status.PASS, Status.WARN) and verdict.metadata["rate_limit_failures"] == 0


def test_an_error_stays_open_when_the_hub_moved_past_the_version_found(topology, person):
    hub = topology.hub
    error = hub.record_error(store="twenty", entity="people", record_id=person.record_id, operation="publish",
                             error=TwentyRateLimited("rate limit exceeded", status=429))
    assert hub.close_errors_of_held("twenty", "people", {person.record_id: person.version - 1}) == 0
    assert error in _open_errors(hub, "twenty")
