"""A Postgres store: the local DB and Supabase (through its Postgres connection) alike.

Capture: a trigger-maintained change log read with an xid8 watermark, so that a transaction that took
its xid early and commits late is never skipped (an id-ordered or time-ordered cursor would pass over it).
Apply: binary COPY. A batch of new rows goes straight into the table (under a savepoint); otherwise into a
temp staging table, then a version-guarded `UPDATE … FROM stage` for the rows that exist and a version-guarded
`INSERT … ON CONFLICT DO UPDATE … WHERE excluded.sync_version > t.sync_version` for the rest; never a
per-row loop. Our own writes set `sync_pipeline.writer` for the transaction; the triggers' WHEN clauses
skip them, so they are neither logged nor re-stamped.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads

from sync_pipeline.engine.records import ApplyResult, GoldenRecord
from sync_pipeline.redaction import call_masked, dsn_secrets, redact_text
from sync_pipeline.model.canonical import CanonicalValueError, canonical_record, content_hash, python_value
from sync_pipeline.model.entities import ENTITIES, Entity, FieldType
from sync_pipeline.stores.base import (
    CaptureBatch,
    ConsistencyReport,
    Health,
    IdMap,
    RawChange,
    SameIds,
    compare_inventory,
    live_data,
    translate_references,
)
from sync_pipeline.stores.postgres.ddl import (
    CDC_SCHEMA,
    CHANGE_LOG,
    PG_TYPES,
    WRITER_SETTING,
    install_capture,
    trigger_names,
)
from sync_pipeline.stores.limits import refusals
from sync_pipeline.stores.postgres.limits import LIMITS
from sync_pipeline.stores.postgres.loaders import read_any_timestamp
from sync_pipeline.stores.postgres.writes import (
    UuidTextBinaryDumper,
    any_exists,
    delete_older,
    locked_rows,
    one_row,
    upsert_staged,
)

# Ids probed to tell a batch of new rows (COPY straight in) from one with updates (guarded upsert).
_NEW_ROWS_SAMPLE = 1_000
# Bounded waits: an application's row lock delays its rows, never the run (`SyncSettings` holds the same).
LOCK_TIMEOUT_MS = 5_000
STATEMENT_TIMEOUT_MS = 300_000
# Writes of a batch tried after a lock timeout, each without the rows found locked.
_LOCK_ATTEMPTS = 3


class RowLocked(Exception):
    """An application held the row locked longer than the lock timeout; the next run writes it."""


class PostgresStore:
    """One Postgres database holding the app tables of every entity."""


    def __init__(self, name: str, dsn: str, *, id_map: IdMap | None = None, schema: str = "public",
                 sslmode: str | None = None, connect_timeout: int = 10,
                 lock_timeout_ms: int = LOCK_TIMEOUT_MS, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> None:
        self.name = name
        self.id_map = id_map or SameIds()
        self.schema = schema
        self._dsn = dsn
        self._secrets = dsn_secrets(dsn)
        self._timeouts = (str(lock_timeout_ms), str(statement_timeout_ms))
        # No prepared statements: behind a transaction pooler (Supabase's on port 6543) one prepared on a
        # server connection is unknown on the next, or already taken there by another client.
        self._kwargs: dict[str, Any] = {"connect_timeout": connect_timeout, "prepare_threshold": None}
        # The URL's own sslmode (verify-full, with its sslrootcert) wins; the setting is only its default.
        if sslmode and "sslmode" not in _parameters(dsn):
            self._kwargs["sslmode"] = sslmode

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[DictRow]]:
        """One connection, one transaction (committed when the block ends), under the lock and statement
        timeouts. A malformed URL's password, which libpq quotes in its error, is masked there."""
        conn = call_masked(lambda: psycopg.connect(self._dsn, row_factory=dict_row, **self._kwargs), *self._secrets)
        with conn:
            # Local to the transaction, which is the connection's whole work: a transaction pooler refuses
            # startup options and would hand a session setting to other clients.
            conn.execute("select set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                         self._timeouts)
            # jsonb numerics as Decimal: floats would lose money's precision.
            set_json_loads(partial(json.loads, parse_float=Decimal), conn)
            yield conn

    def table(self, entity: Entity) -> sql.Identifier:
        return sql.Identifier(self.schema, entity.name)

    # -- installation ------------------------------------------------------------------------------

    def install(self) -> None:
        """Create the app tables if missing, add the sync columns, and install the change capture.
        Idempotent, so it runs before every capture and after a trigger was dropped."""
        with self.connect() as conn, conn.transaction():
            install_capture(conn, self.schema, ENTITIES)

    # -- capture -----------------------------------------------------------------------------------

    def capture(self, entity: Entity, cursor: dict[str, Any] | None, limit: int) -> CaptureBatch:
        """Changes after the cursor from transactions that have all finished, in commit-safe order."""
        position = cursor or {"txid": "0", "seq": 0}
        with self.connect() as conn:
            rows = conn.execute(sql.SQL("""
                select l.seq, l.txid::text as txid_text, l.op, l.pk, l.row_data, l.changed_at
                from {log} l
                where l.tbl = %s and (l.txid, l.seq) > (%s::xid8, %s)
                  and l.txid < pg_snapshot_xmin(pg_current_snapshot())
                order by l.txid, l.seq
                limit %s""").format(log=CHANGE_LOG),
                (entity.name, position["txid"], position["seq"], limit)).fetchall()
        translate_references(entity, [r["row_data"] for r in rows], self.id_map, to_store=False)
        changes = []
        for r in rows:
            data = r["row_data"]
            deleted = r["op"] == "D"
            changes.append(RawChange(
                record_id=str(r["pk"]),
                deleted=deleted,
                row=data,
                # The trigger's own clock: an app may write any updated_at, last write wins must not trust it.
                modified_at=r["changed_at"],
                event_key=f"{r['txid_text']}:{r['seq']}",
                store_record_id=str(r["pk"]),
                base_version=int(data.get("sync_version") or 0),
            ))
        if rows:
            position = {"txid": rows[-1]["txid_text"], "seq": rows[-1]["seq"]}
        return CaptureBatch(changes=changes, cursor=position, more=len(rows) == limit)

    def latest_change(self, entity: Entity) -> str | None:
        """The newest change-log position of the entity ("txid:seq"), for the CDC sensor: cheap, indexed."""
        with self.connect() as conn:
            row = conn.execute(sql.SQL("""select txid::text || ':' || seq as position from {} where tbl = %s
                                          order by txid desc, seq desc limit 1""").format(
                CHANGE_LOG), (entity.name,)).fetchone()
        return row["position"] if row else None

    def prune(self, entity: Entity, cursor: dict[str, Any]) -> int:
        """Drop change-log rows at or before a cursor the hub has committed."""
        with self.connect() as conn:
            return conn.execute(sql.SQL("delete from {} where tbl = %s and (txid, seq) <= (%s::xid8, %s)").format(
                CHANGE_LOG), (entity.name, cursor["txid"], cursor["seq"])).rowcount

    def capture_status(self, entity: Entity, cursor: dict[str, Any] | None) -> dict[str, Any]:
        """Whether the change capture is installed for the entity, and how far the cursor lags."""
        position = cursor or {"txid": "0", "seq": 0}
        touch, cdc = trigger_names(entity)
        with self.connect() as conn:
            log_present = one_row(conn.execute("select to_regclass(%s) is not null as present",
                                            (f"{CDC_SCHEMA}.change_log",)))["present"]
            triggers = conn.execute(
                """select t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid
                   join pg_namespace n on n.oid = c.relnamespace
                   where n.nspname = %s and c.relname = %s and t.tgenabled <> 'D' and not t.tgisinternal""",
                (self.schema, entity.name)).fetchall()
            names = {t["tgname"] for t in triggers}
            lag: dict[str, Any] = {"rows_behind": None, "seconds_behind": None}
            if log_present:
                lag = one_row(conn.execute(sql.SQL("""
                    select count(*) as rows_behind,
                           coalesce(extract(epoch from clock_timestamp() - min(changed_at)), 0)::float
                             as seconds_behind
                    from {} where tbl = %s and (txid, seq) > (%s::xid8, %s)""").format(
                    CHANGE_LOG),
                    (entity.name, position["txid"], position["seq"])))
        ready = log_present and cdc in names and touch in names
        return {"ready": ready, "change_log_present": log_present, "capture_trigger": cdc in names,
                "touch_trigger": touch in names, **lag}

    # -- apply -------------------------------------------------------------------------------------

    def apply(self, entity: Entity, records: Sequence[GoldenRecord]) -> ApplyResult:
        """Write golden records: upserts through COPY + one guarded upsert, tombstones as deletes."""
        result = ApplyResult()
        row_ids = {g.record_id: g.record_id for g in records}
        row_ids.update(self.id_map.to_store(entity.name, list(row_ids)))
        record_of_row = {row_id: record_id for record_id, row_id in row_ids.items()}
        # One row per id, the highest version: ON CONFLICT may touch a row only once per statement, and
        # deduplicating here spares the database a DISTINCT ON sort of the whole stage.
        refused = refusals(LIMITS, entity, records)  # a value Postgres cannot hold fails alone, unsent
        latest: dict[str, GoldenRecord] = {}
        for g in records:
            if not g.deleted and g.record_id not in refused:
                row_id = row_ids[g.record_id]
                kept = latest.get(row_id)
                if kept is None or g.version > kept.version:
                    latest[row_id] = g
        deletes = [g for g in records if g.deleted]
        table = self.table(entity)
        columns = ["id", *entity.field_names, "sync_version", "updated_at"]
        types = ["uuid", *(PG_TYPES[f.type] for f in entity.fields), "int8", "timestamptz"]
        stale_rows: set[str] = set()
        deleted_rows: list[str] = []
        locked: set[str] = set()  # rows an application holds locked: left for the next run
        with self.connect() as conn, conn.transaction():
            conn.execute("select set_config(%s, 'sync', true)", (WRITER_SETTING,))
            cols = sql.SQL(", ").join(map(sql.Identifier, columns))

            def copy_into(cur: psycopg.Cursor[DictRow], target: sql.Composable) -> None:
                with cur.copy(sql.SQL("copy {} ({}) from stdin (format binary)").format(target, cols)) as copy:
                    copy.set_types(types)
                    for row in self._copy_rows(entity, {i: g for i, g in latest.items() if i not in locked}):
                        copy.write_row(row)

            copied_directly = False
            if latest and not any_exists(conn, table, list(latest)[:_NEW_ROWS_SAMPLE]):
                # The batch looks new (an initial load, a batch of new records): COPY straight into the
                # table, inside a savepoint. Should any row exist after all (beyond the sample, or written
                # meanwhile), the unique index refuses the COPY and the guarded upsert takes the batch.
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        cur.adapters.register_dumper(None, UuidTextBinaryDumper)
                        copy_into(cur, table)
                    copied_directly = True
                except (psycopg.errors.UniqueViolation, psycopg.errors.LockNotAvailable):
                    pass
            # A statement that waits past the lock timeout fails its savepoint; the rows an application
            # holds are then found (the others locked by us meanwhile) and the batch written without them.
            for attempt in range(1, _LOCK_ATTEMPTS + 1):
                try:
                    with conn.transaction():
                        if latest and not copied_directly:
                            stale_rows = upsert_staged(conn, entity, table, columns, copy_into,
                                                      len(latest) - len(locked & latest.keys()))
                        if deletes:
                            deleted_rows = delete_older(conn, table, [
                                (row_ids[g.record_id], g.version) for g in deletes
                                if row_ids[g.record_id] not in locked])
                    break
                except psycopg.errors.LockNotAvailable:
                    if attempt == _LOCK_ATTEMPTS:
                        raise
                    locked |= locked_rows(conn, table, [*latest, *(row_ids[g.record_id] for g in deletes)])
        written_rows = [row_id for row_id in latest if row_id not in stale_rows | locked] + deleted_rows
        result.applied = [record_of_row[row_id] for row_id in written_rows]
        result.failed = {record_of_row[row_id]: RowLocked(
            f"row locked by another transaction for over {self._timeouts[0]} ms; retried next run")
            for row_id in locked}
        result.failed.update(refused)
        done = set(result.applied) | result.failed.keys()
        result.stale = [g.record_id for g in records if g.record_id not in done]
        result.store_ids = {g.record_id: row_ids[g.record_id] for g in records}
        return result

    def _copy_rows(self, entity: Entity, latest: dict[str, GoldenRecord]) -> Iterator[list[Any]]:
        """The stage's rows in column order. Text, integer and boolean values pass through, uuids stay
        strings for `UuidTextBinaryDumper`, references are translated once per distinct id. Rows are
        yielded one at a time: 100k rows held at once would wake the garbage collector's full passes."""
        names = entity.field_names
        converters: list[tuple[int, Callable[[Any], Any]]] = []
        for i, f in enumerate(entity.fields, 1):
            if f.references:
                converters.append((i, self._store_references(entity, f.name, latest).__getitem__))
            elif f.type in (FieldType.NUMERIC, FieldType.TIMESTAMP):
                converters.append((i, partial(python_value, f.type)))
        for row_id, g in latest.items():
            row = [row_id, *map(live_data(g).get, names), g.version, g.origin_modified_at]
            for i, convert in converters:
                if row[i] is not None:
                    row[i] = convert(row[i])
            yield row

    def _store_references(self, entity: Entity, column: str,
                          latest: dict[str, GoldenRecord]) -> dict[Any, Any]:
        """Each value of a reference column -> its store id, through `translate_references` on one row per
        distinct value (it leaves empty values as they are)."""
        values = [v for v in {live_data(g).get(column) for g in latest.values()} if v is not None]
        translated = [{column: v} for v in values]
        translate_references(entity, translated, self.id_map, to_store=True)
        return {v: row[column] for v, row in zip(values, translated)}

    # -- reads -------------------------------------------------------------------------------------

    def rows(self, entity: Entity) -> list[dict[str, Any]]:
        """Every row with the canonical columns, as stored."""
        cols = sql.SQL(", ").join(map(sql.Identifier, ["id", *entity.field_names]))
        with self.connect() as conn:
            read_any_timestamp(conn)  # one row out of Python's range must not stop the read
            return conn.execute(sql.SQL("select {} from {} order by id").format(cols, self.table(entity))).fetchall()

    def refresh(self, entity: Entity, store_ids: Sequence[str]) -> dict[str, RawChange]:
        """Rows read as they are now, as changes (for reconciliation); a missing row is a delete."""
        cols = sql.SQL(", ").join(map(sql.Identifier, ["id", *entity.field_names, "sync_version", "updated_at"]))
        with self.connect() as conn:
            read_any_timestamp(conn)
            rows = conn.execute(sql.SQL("select {} from {} where id = any(%s::uuid[])").format(
                cols, self.table(entity)), (list(store_ids),)).fetchall()
        for row in rows:
            row["id"] = str(row["id"])
        translate_references(entity, rows, self.id_map, to_store=False)
        found = {row["id"]: RawChange(record_id=row["id"], deleted=False, row=row, modified_at=row["updated_at"],
                                      event_key=f"read:{row['id']}:{row['sync_version']}", store_record_id=row["id"],
                                      base_version=row["sync_version"]) for row in rows}
        now = datetime.now(timezone.utc)
        return {i: found.get(i) or RawChange(record_id=i, deleted=True, row={"id": i}, modified_at=now,
                                             event_key=f"gone:{i}", store_record_id=i) for i in store_ids}

    def inventory(self, entity: Entity) -> dict[str, str]:
        rows = self.rows(entity)
        translate_references(entity, rows, self.id_map, to_store=False)
        record_ids = self.id_map.to_canonical(entity.name, [str(r["id"]) for r in rows])
        out = {}
        for row in rows:
            record_id = record_ids.get(str(row["id"]), str(row["id"]))
            try:
                out[record_id] = content_hash(canonical_record(entity, row))
            except CanonicalValueError as exc:
                out[record_id] = f"invalid: {exc}"
        return out

    def compare_with_hub(self, entity: Entity, hub_records: dict[str, tuple[int, dict[str, Any] | None]]
                         ) -> ConsistencyReport:
        return compare_inventory(self, entity, hub_records)

    def api_stats(self) -> dict[str, Any]:
        return {}

    def check(self) -> Health:
        try:
            with self.connect() as conn:
                info = one_row(conn.execute(
                    """select current_user as role, version() as version,
                              has_schema_privilege(current_user, %s, 'CREATE') as can_create""",
                    (self.schema,)))
        except psycopg.Error as exc:
            return Health(False, f"cannot connect: {type(exc).__name__}: {_first_line(exc)}")
        if not info["can_create"]:
            return Health(False, f"role {info['role']} may not create objects in schema {self.schema}",
                          {"role": info["role"]})
        return Health(True, f"connected as {info['role']}", {"role": info["role"],
                                                             "server": info["version"].split(",")[0]})


def _parameters(dsn: str) -> dict[str, Any]:
    """The connection string's parameters; none of a malformed one (connecting says what is wrong)."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return {}


def _first_line(exc: BaseException) -> str:
    return redact_text(str(exc).splitlines()[0] if str(exc) else "")
