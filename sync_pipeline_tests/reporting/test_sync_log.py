"""The sync log export from a real hub into the bqemulator (no mocks)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from google.cloud import bigquery
from psycopg.types.json import Jsonb

from sync_pipeline.reporting.sync_log import (
    LOG_TABLES,
    LogHub,
    export_sync_log,
    install_sync_log,
    merge_sync_log,
)
from sync_pipeline.stores.bigquery import BigQueryStore, BigQueryTables

pytestmark = pytest.mark.timeout(120)


def log_outcomes(hub: LogHub, run_id: str, n: int) -> None:
    with hub.connect() as conn:
        for version in range(n):
            conn.execute(
                """insert into sync.record_outcomes
                     (run_id, store, entity, record_id, stage, outcome, version)
                   values (%s, 'bigquery', 'people', %s, 'publish', 'applied', %s)""",
                (run_id, str(uuid.uuid4()), version))


def log_conflict(hub: LogHub, run_id: str) -> int:
    with hub.connect() as conn:
        return conn.execute(
            """insert into sync.conflicts (run_id, entity, record_id, golden_version, base_version,
                                           incoming_store, golden_store, winner_store, resolution,
                                           result_version, differing_fields, golden_side, incoming_side)
               values (%s, 'people', %s, 3, 2, 'supabase', 'twenty', 'twenty', 'last_write_wins', 4,
                       array['city'], %s, %s) returning id""",
            (run_id, str(uuid.uuid4()), Jsonb({"city": "Paris"}), Jsonb({"city": "Lyon"}))).fetchone()["id"]


def select(tables: BigQueryTables, sql: str) -> list[dict[str, Any]]:
    """Rows of a query naming the log tables as {sync_runs} and so on."""
    names = {name: f"`{tables.table_id(name)}`" for name in LOG_TABLES}
    return [dict(row.items()) for row in tables.run(sql.format(**names))]


def test_export_moves_the_cursor_in_batches_and_a_second_export_changes_nothing(
        topology, bigquery_store: BigQueryStore) -> None:
    hub, tables = topology.hub, bigquery_store.tables
    run_id = str(uuid.uuid4())
    hub.start_run(run_id, "schedule")
    log_outcomes(hub, run_id, 5)
    conflict_id = log_conflict(hub, run_id)

    first = export_sync_log(hub, tables, "bigquery", limit=2)

    assert (first.runs, first.outcomes, first.conflicts) == (1, 5, 1)
    assert first.rows_changed == {"sync_runs": 1, "sync_record_outcomes": 5, "sync_conflicts": 1}
    assert first.cursor_before is None
    assert first.cursor_after["conflict_id"] == conflict_id
    assert hub.get_cursor("bigquery", "sync_log") == first.cursor_after
    assert select(tables, "SELECT COUNT(*) AS n FROM {sync_record_outcomes}") == [{"n": 5}]

    again = export_sync_log(hub, tables, "bigquery", limit=2)

    assert (again.runs, again.outcomes, again.conflicts) == (1, 0, 0)
    assert again.rows_changed == {"sync_runs": 0, "sync_record_outcomes": 0, "sync_conflicts": 0}
    ids = ("outcome_id", "conflict_id")
    assert [again.cursor_after[k] for k in ids] == [first.cursor_after[k] for k in ids]
    assert again.cursor_before == first.cursor_after

    hub.finish_run(run_id, "SUCCESS")
    finished = export_sync_log(hub, tables, "bigquery")
    assert finished.rows_changed["sync_runs"] == 1
    assert select(tables, "SELECT status FROM {sync_runs}") == [{"status": "SUCCESS"}]


def test_conflicts_carry_incoming_golden_and_winner_stores_beside_a_legacy_column(
        topology, bigquery_store: BigQueryStore) -> None:
    hub, tables = topology.hub, bigquery_store.tables
    conflicts = LOG_TABLES["sync_conflicts"]
    legacy = [c for c in conflicts.schema if c.name not in ("incoming_store", "golden_store")]
    legacy.append(bigquery.SchemaField("loser_store", "STRING"))
    tables.ensure_table(conflicts.name, legacy, clustering=["id"])  # as exports before the fix made it
    log_conflict(hub, str(uuid.uuid4()))

    export = export_sync_log(hub, tables, "bigquery")

    assert export.rows_changed["sync_conflicts"] == 1
    assert select(tables, "SELECT incoming_store, golden_store, winner_store, loser_store, differing_fields,"
                          " golden_side FROM {sync_conflicts}") == [
        {"incoming_store": "supabase", "golden_store": "twenty", "winner_store": "twenty",
         "loser_store": None, "differing_fields": ["city"], "golden_side": '{"city": "Paris"}'}]


def test_one_export_drains_a_backlog_of_many_batches(topology, bigquery_store: BigQueryStore) -> None:
    hub, tables = topology.hub, bigquery_store.tables
    run_id = str(uuid.uuid4())
    hub.start_run(run_id, "schedule")
    log_outcomes(hub, run_id, 23)
    conflict_ids = [log_conflict(hub, run_id) for _ in range(3)]

    export = export_sync_log(hub, tables, "bigquery", limit=5)

    assert (export.outcomes, export.conflicts, export.batches) == (23, 3, 5)  # 5 + 5 + 5 + 5 + 3
    assert export.cursor_after["conflict_id"] == conflict_ids[-1]
    assert select(tables, "SELECT COUNT(*) AS n FROM {sync_record_outcomes}") == [{"n": 23}]
    assert select(tables, "SELECT COUNT(*) AS n FROM {sync_conflicts}") == [{"n": 3}]
    caught_up = export_sync_log(hub, tables, "bigquery", limit=5)
    assert (caught_up.outcomes, caught_up.conflicts, caught_up.batches) == (0, 0, 1)


def test_a_run_is_exported_while_unfinished_and_once_finished_not_every_time(
        topology, bigquery_store: BigQueryStore) -> None:
    hub, tables = topology.hub, bigquery_store.tables
    old_run = str(uuid.uuid4())
    hub.start_run(old_run, "schedule")
    hub.finish_run(old_run, "SUCCESS")
    with hub.connect() as conn:  # finished an hour ago, before the export's overlap
        conn.execute("""update sync.runs set started_at = now() - interval '2 hours',
                          finished_at = now() - interval '1 hour' where run_id = %s""", (old_run,))

    assert export_sync_log(hub, tables, "bigquery").runs == 1  # the first export reads the whole week
    assert export_sync_log(hub, tables, "bigquery").runs == 0

    new_run = str(uuid.uuid4())
    hub.start_run(new_run, "sensor")
    assert export_sync_log(hub, tables, "bigquery").runs == 1
    hub.finish_run(new_run, "FAILURE")
    finished = export_sync_log(hub, tables, "bigquery")
    assert (finished.runs, finished.rows_changed["sync_runs"]) == (1, 1)
    assert select(tables, "SELECT run_id, status FROM {sync_runs} ORDER BY started_at") == [
        {"run_id": old_run, "status": "SUCCESS"}, {"run_id": new_run, "status": "FAILURE"}]


def test_log_tables_are_partitioned_by_day_and_a_merge_spanning_days_stays_idempotent(
        bigquery_store: BigQueryStore) -> None:
    tables = bigquery_store.tables
    install_sync_log(tables)
    for name, column in (("sync_runs", "started_at"), ("sync_record_outcomes", "at"),
                         ("sync_conflicts", "detected_at")):
        partitioning = tables.client.get_table(tables.table_id(name)).time_partitioning
        assert partitioning is not None and (partitioning.field, partitioning.type_) == (column, "DAY")
    monday = datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=timezone.utc)
    run_id = str(uuid.uuid4())
    times = [monday, monday + timedelta(microseconds=1), monday + timedelta(days=3)]  # three rows, two days
    outcomes = [{"outcome_id": str(n), "run_id": run_id, "store": "bigquery", "entity": "people",
                 "record_id": str(uuid.uuid4()), "stage": "publish", "outcome": "applied", "version": 1,
                 "detail": None, "at": at} for n, at in enumerate(times)]
    undated = {**outcomes[0], "outcome_id": None, "at": None}  # keyed by a hash; no range to bound the merge

    assert merge_sync_log(tables, [], [*outcomes, undated], [])["sync_record_outcomes"] == 4
    assert merge_sync_log(tables, [], [*outcomes, undated], [])["sync_record_outcomes"] == 0
    assert merge_sync_log(tables, [], outcomes[1:], [])["sync_record_outcomes"] == 0
    assert select(tables, "SELECT COUNT(*) AS n FROM {sync_record_outcomes}") == [{"n": 4}]
