"""The sync's own record in the warehouse: the hub's runs, per-record outcomes and conflicts.

Analysts ask the warehouse what changed, who won a conflict and what failed, so the hub's log is copied
there. The copy is keyed (run id, outcome id, conflict id): exporting a row twice changes nothing, so an
export that fails half-way is simply run again. Outcomes and conflicts only grow and are read after a
cursor kept in the hub; runs change while they are in progress, so a run is read while it is unfinished and
once more after it finishes (its status, end and counts updated when they differ), never the whole week again.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import orjson
import psycopg
from google.cloud import bigquery

from sync_pipeline.model.canonical import format_timestamp, parse_timestamp
from sync_pipeline.stores.bigquery.tables import BigQueryTables, KeyedTable

SF = bigquery.SchemaField
CURSOR_NAME = "sync_log"  # the hub cursor's "entity", beside the store's key
_START = {"outcome_id": 0, "conflict_id": 0}
# Runs finished or started this long before an export began are read again by the next one: a run's
# `now()` is its transaction's start, so it may commit after an export that began later.
RUNS_OVERLAP = timedelta(minutes=10)

RUNS, OUTCOMES, CONFLICTS = (
    KeyedTable(
        "sync_runs",
        key="run_id",
        schema=(
            SF("run_id", "STRING", mode="REQUIRED"),
            SF("started_at", "TIMESTAMP"),
            SF("finished_at", "TIMESTAMP"),
            SF("status", "STRING"),
            SF("trigger", "STRING"),
            SF("counts", "STRING", description="JSON object"),
            SF("exported_at", "TIMESTAMP"),
        ),
        # A run exported while in progress is completed by a later export.
        updatable=("finished_at", "status", "counts"),
        touched=("exported_at",),
        partition_by="started_at",
    ),
    KeyedTable(
        "sync_record_outcomes",
        key="outcome_id",
        schema=(
            SF("outcome_id", "STRING", mode="REQUIRED", description="The hub's id, or a hash of the row"),
            SF("run_id", "STRING"),
            SF("store", "STRING"),
            SF("entity", "STRING"),
            SF("record_id", "STRING"),
            SF("stage", "STRING"),
            SF("outcome", "STRING"),
            SF("version", "INT64"),
            SF("detail", "STRING"),
            SF("at", "TIMESTAMP"),
            SF("exported_at", "TIMESTAMP"),
        ),
        partition_by="at",
    ),
    KeyedTable(
        "sync_conflicts",
        key="id",
        schema=(
            SF("id", "STRING", mode="REQUIRED"),
            SF("entity", "STRING"),
            SF("record_id", "STRING"),
            SF("detected_at", "TIMESTAMP"),
            SF("run_id", "STRING"),
            SF("incoming_store", "STRING", description="The store whose edit met a different golden edit"),
            SF("golden_store", "STRING", description="The store the golden record's edit came from"),
            SF("winner_store", "STRING"),
            SF("resolution", "STRING"),
            SF("winning_version", "INT64"),
            SF("differing_fields", "STRING", mode="REPEATED"),
            SF("golden_side", "STRING", description="JSON object"),
            SF("incoming_side", "STRING", description="JSON object"),
            SF("exported_at", "TIMESTAMP"),
        ),
        partition_by="detected_at",
        # Tables created before `incoming_store` and `golden_store` also have a `loser_store` column; it
        # held `incoming_store` under a misleading name, is nullable, and is no longer written.
    ),
)
LOG_TABLES: dict[str, KeyedTable] = {t.name: t for t in (RUNS, OUTCOMES, CONFLICTS)}
_OUTCOME_KEY_COLUMNS = ("run_id", "store", "entity", "record_id", "stage", "outcome", "version")


class LogHub(Protocol):
    """What the export needs of the hub: its database, and a cursor per (store, name)."""

    def connect(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...

    def get_cursor(self, store: str, entity: str) -> dict[str, Any] | None: ...

    def set_cursor(self, store: str, entity: str, position: dict[str, Any]) -> None: ...


@dataclass
class SyncLogExport:
    """What one export read from the hub and changed in the warehouse, and where its cursor moved."""

    runs: int = 0
    outcomes: int = 0
    conflicts: int = 0
    batches: int = 0  # of at most `limit` outcomes and `limit` conflicts each, read until the log is drained
    rows_changed: dict[str, int] = field(default_factory=lambda: {name: 0 for name in LOG_TABLES})
    cursor_before: dict[str, Any] | None = None
    cursor_after: dict[str, Any] = field(default_factory=lambda: dict(_START))


def install_sync_log(tables: BigQueryTables) -> None:
    """Create the log tables when missing and add columns new to existing ones (idempotent)."""
    tables.ensure_dataset()
    for table in LOG_TABLES.values():
        tables.ensure_table(table.name, table.schema, clustering=[table.key], partition_by=table.partition_by)


def export_sync_log(
    hub: LogHub, tables: BigQueryTables, store_key: str, limit: int = 10_000
) -> SyncLogExport:
    """Copy the hub's log written since the last export into the warehouse, `limit` rows per batch, batch
    after batch until it is drained: one run catches up with any backlog, holding one batch at a time.

    The cursor (`store_key`, "sync_log") moves after each batch is merged, so an export that fails resumes
    from its last whole batch, and a batch merged twice changes nothing.
    """
    install_sync_log(tables)
    before = hub.get_cursor(store_key, CURSOR_NAME)
    export = SyncLogExport(cursor_before=before, cursor_after=dict(before or _START))
    runs, runs_after = _runs_changed(hub, export.cursor_after.get("runs_after"))
    export.runs = len(runs)
    _count(export, merge_sync_log(tables, runs, [], []))
    export.cursor_after["runs_after"] = runs_after
    while True:
        outcomes, conflicts, after = _log_after(hub, export.cursor_after, limit)
        export.batches += 1
        _count(export, merge_sync_log(tables, [], outcomes, conflicts))
        export.outcomes += len(outcomes)
        export.conflicts += len(conflicts)
        export.cursor_after = {**export.cursor_after, **after}
        hub.set_cursor(store_key, CURSOR_NAME, export.cursor_after)
        if len(outcomes) < limit and len(conflicts) < limit:
            return export


def merge_sync_log(
    tables: BigQueryTables,
    runs: list[dict[str, Any]],
    outcomes: list[dict[str, Any]],
    conflicts: list[dict[str, Any]],
) -> dict[str, int]:
    """Merge log rows, as the hub's log reads them, into the log tables (which must exist); returns rows
    changed per table. An outcome without the hub's id is keyed by a hash of what identifies it."""
    exported_at = format_timestamp(datetime.now(timezone.utc))
    return {
        table.name: tables.merge(table, ({**row, "exported_at": exported_at} for row in rows))
        for table, rows in (
            (RUNS, runs),
            (OUTCOMES, [_with_outcome_id(o) for o in outcomes]),
            (CONFLICTS, conflicts),
        )
    }


def _count(export: SyncLogExport, changed: dict[str, int]) -> None:
    for name, n in changed.items():
        export.rows_changed[name] += n


def _runs_changed(hub: LogHub, since: str | None) -> tuple[list[dict[str, Any]], str]:
    """Runs of the last week (older ones were exported when they finished) that are unfinished, or started
    or finished since `since` (every one when None); and the `since` of the next export."""
    with hub.connect() as conn:
        now = conn.execute("select now() as now").fetchall()[0]["now"]
        runs = conn.execute(
            """select run_id, started_at, finished_at, status, trigger, counts::text as counts from sync.runs
               where started_at > now() - interval '7 days'
                 and (%(since)s::timestamptz is null or finished_at is null
                      or finished_at >= %(since)s::timestamptz or started_at >= %(since)s::timestamptz)
               order by started_at""", {"since": since}).fetchall()
    return runs, format_timestamp(now - RUNS_OVERLAP)


def _log_after(hub: LogHub, cursor: dict[str, Any], limit: int) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """Up to `limit` outcomes and `limit` conflicts after the cursor, and the ids after them."""
    with hub.connect() as conn:
        outcomes = conn.execute(
            """select id as outcome_id, run_id, store, entity, record_id, stage, outcome, version, detail, at
               from sync.record_outcomes where id > %s order by id limit %s""",
            (cursor["outcome_id"], limit)).fetchall()
        conflicts = conn.execute(
            """select id, entity, record_id::text as record_id, detected_at, run_id, incoming_store,
                      golden_store, winner_store, resolution, result_version as winning_version,
                      differing_fields, golden_side::text as golden_side, incoming_side::text as incoming_side
               from sync.conflicts where id > %s order by id limit %s""",
            (cursor["conflict_id"], limit)).fetchall()
    return outcomes, conflicts, {
        "outcome_id": outcomes[-1]["outcome_id"] if outcomes else cursor["outcome_id"],
        "conflict_id": conflicts[-1]["id"] if conflicts else cursor["conflict_id"]}


def _with_outcome_id(outcome: dict[str, Any]) -> dict[str, Any]:
    """The outcome with `outcome_id`: the hub's id when it has one, else a hash of what identifies it."""
    if outcome.get("outcome_id") or outcome.get("id"):
        return {**outcome, "outcome_id": str(outcome.get("outcome_id") or outcome["id"])}
    at = outcome.get("at")
    identity: list[str | None] = [str(outcome.get(c)) for c in _OUTCOME_KEY_COLUMNS]
    identity.append(format_timestamp(parse_timestamp(at)) if at else None)
    key = orjson.dumps(identity)
    return {**outcome, "outcome_id": hashlib.sha256(key).hexdigest()}
