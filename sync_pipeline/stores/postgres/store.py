"""A Postgres store: the local DB and Supabase (through its Postgres connection) alike, each entity in the
table the sync configuration maps it to (`tables.MappedTable`).

Capture: a trigger-maintained change log in the sync's own schema, read with an xid8 watermark, so that a
transaction that took its xid early and commits late is never skipped (an id-ordered or time-ordered cursor
would pass over it). A change carries the row version it was made over, and its time is the trigger's clock
(`changed_at`), never an app column. Apply: `apply.apply_batch` (binary COPY, version-guarded). Our own
writes set `sync_pipeline.writer` for their transaction; the trigger's WHEN clause skips them. A table whose
configured columns are gone or changed type is neither read nor written (`drift.SchemaDrift`).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from typing import Any, Iterator, Sequence

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from sync_pipeline.config import SyncConfig, active_config
from sync_pipeline.engine.batch import canonical_id
from sync_pipeline.engine.records import ApplyResult, GoldenRecord
from sync_pipeline.model.canonical import CanonicalValueError, canonical_record, content_hash
from sync_pipeline.model.entities import ENTITIES, Entity
from sync_pipeline.postgres_json import use_fast_json
from sync_pipeline.postgres_statistics import analyze_grown
from sync_pipeline.redaction import call_masked, dsn_secrets, redact_text
from sync_pipeline.stores.base import (
    CaptureBatch,
    ConsistencyReport,
    Health,
    IdMap,
    RawChange,
    SameIds,
    compare_hashes,
    live_hashes,
    translate_references,
)
from sync_pipeline.stores.postgres.apply import apply_batch
from sync_pipeline.stores.postgres.catalog import LiveTable, describe, relation_names
from sync_pipeline.stores.postgres.ddl import (
    CDC_SCHEMA,
    CHANGE_LOG,
    LOCK,
    Statement,
    capture_trigger,
    row_versions,
    sync_schema_statements,
    table_statements,
)
from sync_pipeline.stores.postgres.drift import Drift, SchemaDrift, blocking, table_drift
from sync_pipeline.stores.postgres.loaders import read_any_timestamp
from sync_pipeline.stores.postgres.tables import MappedTable, NotCarried
from sync_pipeline.stores.postgres.writes import one_row

# Bounded waits: an application's row lock delays its rows, never the run (`SyncSettings` holds the same).
LOCK_TIMEOUT_MS = 5_000
STATEMENT_TIMEOUT_MS = 300_000
# A capture analyzes the change log once it grew past its last analysis by this many changes and its size.
ANALYZE_AFTER_CHANGES = 10_000
# The stores Supabase's Data API reaches (a table the sync creates there gets row-level security), and the
# schemas it exposes by default (Project Settings -> API -> Exposed schemas).
DATA_API_STORES = frozenset({"supabase"})
DATA_API_SCHEMAS: tuple[str, ...] = ("public", "graphql_public")


class PostgresStore:
    """One Postgres database holding the app tables the sync configuration maps the entities to."""

    def __init__(self, name: str, dsn: str, *, id_map: IdMap | None = None, config: SyncConfig | None = None,
                 sslmode: str | None = None, connect_timeout: int = 10,
                 lock_timeout_ms: int = LOCK_TIMEOUT_MS, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> None:
        self.name = name
        self.id_map = id_map or SameIds()
        self.config = config or active_config()
        self.data_api = name in DATA_API_STORES
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
            use_fast_json(conn, exact_decimals=True)
            yield conn


    def table(self, entity: Entity) -> MappedTable:
        """The entity's table in this store (`NotCarried` when the configuration maps none)."""
        return MappedTable.of(self.config, self.name, entity)

    def carries(self, entity: Entity) -> bool:
        return self.config.table_mapping(self.name, entity.name) is not None

    def _tables(self) -> list[MappedTable]:
        return [self.table(e) for e in ENTITIES if self.carries(e)]

    def _live(self, conn: psycopg.Connection[DictRow], table: MappedTable) -> LiveTable:
        """The table from the catalog, refused when a configured column is gone or changed type."""
        live = describe(conn, table.mapping.schema, table.mapping.table)
        problems = blocking(table_drift(table, live))
        if problems or live is None:
            raise SchemaDrift(problems)
        return live

    def schema_drift(self, entity: Entity) -> list[Drift]:
        """The configured columns of the entity's table against the live table (`drift.table_drift`)."""
        table = self.table(entity)
        with self.connect() as conn:
            return table_drift(table, describe(conn, table.mapping.schema, table.mapping.table))

    def live_table(self, entity: Entity) -> LiveTable | None:
        """The entity's table as the catalog holds it, or None when it does not exist."""
        table = self.table(entity)
        with self.connect() as conn:
            return describe(conn, table.mapping.schema, table.mapping.table)

    # -- installation ------------------------------------------------------------------------------

    def install_statements(self, conn: psycopg.Connection[DictRow]) -> list[Statement]:
        """What install runs, given the database as it stands (read from the catalog, nothing written)."""
        tables = self._tables()
        statements = sync_schema_statements(describe(conn, CDC_SCHEMA, "change_log"),
                                            describe(conn, CDC_SCHEMA, "row_versions"), tables,
                                            relation_names(conn, CDC_SCHEMA))
        for table in tables:
            statements += table_statements(table, describe(conn, table.mapping.schema, table.mapping.table),
                                           self.data_api)
        return statements

    def install(self) -> None:
        """Install the sync's schema and the capture trigger of every mapped table, creating the tables the
        configuration asks to create. Idempotent: also mends a dropped trigger."""
        with self.connect() as conn, conn.transaction():
            conn.execute(LOCK)
            for statement in self.install_statements(conn):
                conn.execute(statement)

    def install_sql(self) -> list[str]:
        """The statements install would run now, as text; nothing is written (a read-only transaction)."""
        with self.connect() as conn:
            conn.execute("set transaction read only")
            return [s.as_string(conn) for s in [LOCK, *self.install_statements(conn)]]

    # -- capture -----------------------------------------------------------------------------------

    def capture(self, entity: Entity, cursor: dict[str, Any] | None, limit: int) -> CaptureBatch:
        """Changes after the cursor from transactions that have all finished, in commit-safe order."""
        position = cursor or {"txid": "0", "seq": 0}
        if not self.carries(entity):
            return CaptureBatch(changes=[], cursor=position)
        table = self.table(entity)
        with self.connect() as conn:
            self._live(conn, table)
            # After a bulk import each page's read was planned for the few rows last counted: a bitmap scan
            # sorting every change left (69 ms a page at 300k, quadratic over a capture).
            analyze_grown(conn, [(CDC_SCHEMA, "change_log")], ANALYZE_AFTER_CHANGES)
            rows = conn.execute(sql.SQL("""
                select l.seq, l.txid::text as txid_text, l.op, l.pk, l.base_version, l.row_data, l.changed_at
                from {log} l
                where l.tbl = %s and (l.txid, l.seq) > (%s::xid8, %s)
                  and l.txid < pg_snapshot_xmin(pg_current_snapshot())
                order by l.txid, l.seq
                limit %s""").format(log=CHANGE_LOG),
                (table.key, position["txid"], position["seq"], limit)).fetchall()
        data = [_canonical_row(table, r["pk"], r["row_data"]) for r in rows]
        translate_references(entity, data, self.id_map, to_store=False)
        self._canonical_ids(table, data)
        changes = [RawChange(
            record_id=r["pk"],
            deleted=r["op"] == "D",
            row=row,
            # The trigger's own clock: an app may write any time into its columns, which last write wins
            # must not trust.
            modified_at=r["changed_at"],
            event_key=f"{r['txid_text']}:{r['seq']}",
            store_record_id=r["pk"],
            base_version=r["base_version"],
        ) for r, row in zip(rows, data)]
        if rows:
            position = {"txid": rows[-1]["txid_text"], "seq": rows[-1]["seq"]}
        return CaptureBatch(changes=changes, cursor=position, more=len(rows) == limit)

    def _canonical_ids(self, table: MappedTable, rows: list[dict[str, Any]]) -> None:
        """Give rows read from the store their canonical id in place (the contract checks it): the id map's,
        else the one the hub gives a record new to it (`engine.batch.canonical_id`)."""
        known = self.id_map.to_canonical(table.entity.name, [r["id"] for r in rows])
        for row in rows:
            row["id"] = known.get(row["id"]) or canonical_id(row["id"], self.name)

    def latest_change(self, entity: Entity) -> str | None:
        """The newest change-log position of the entity ("txid:seq"), for the CDC sensor: cheap, indexed."""
        if not self.carries(entity):
            return None
        with self.connect() as conn:
            row = conn.execute(sql.SQL("""select txid::text || ':' || seq as position from {} where tbl = %s
                                          order by txid desc, seq desc limit 1""").format(
                CHANGE_LOG), (self.table(entity).key,)).fetchone()
        return row["position"] if row else None

    def prune(self, entity: Entity, cursor: dict[str, Any]) -> int:
        """Drop change-log rows at or before a cursor the hub has committed."""
        if not self.carries(entity):
            return 0
        with self.connect() as conn:
            return conn.execute(sql.SQL("delete from {} where tbl = %s and (txid, seq) <= (%s::xid8, %s)").format(
                CHANGE_LOG), (self.table(entity).key, cursor["txid"], cursor["seq"])).rowcount

    def capture_status(self, entity: Entity, cursor: dict[str, Any] | None) -> dict[str, Any]:
        """Whether the change capture is installed for the entity, and how far the cursor lags."""
        if not self.carries(entity):
            return {"ready": True, "carried": False}
        position = cursor or {"txid": "0", "seq": 0}
        table = self.table(entity)
        with self.connect() as conn:
            present = one_row(conn.execute(
                "select to_regclass(%s) is not null as log, to_regclass(%s) is not null as versions",
                (f"{CDC_SCHEMA}.change_log", row_versions(table).as_string(conn))))
            live = describe(conn, table.mapping.schema, table.mapping.table)
            trigger = bool(live and live.triggers.get(capture_trigger(table)))
            lag: dict[str, Any] = {"rows_behind": None, "seconds_behind": None}
            if present["log"]:
                lag = one_row(conn.execute(sql.SQL("""
                    select count(*) as rows_behind,
                           coalesce(extract(epoch from clock_timestamp() - min(changed_at)), 0)::float
                             as seconds_behind
                    from {} where tbl = %s and (txid, seq) > (%s::xid8, %s)""").format(CHANGE_LOG),
                    (table.key, position["txid"], position["seq"])))
        return {"ready": present["log"] and present["versions"] and trigger, "table": table.key,
                "change_log_present": present["log"], "row_versions_present": present["versions"],
                "capture_trigger": trigger, **lag}

    # -- apply -------------------------------------------------------------------------------------

    def apply(self, entity: Entity, records: Sequence[GoldenRecord]) -> ApplyResult:
        """Write golden records to the entity's table (`apply.apply_batch`); nothing where not carried."""
        if not self.carries(entity):
            return ApplyResult()
        table = self.table(entity)
        return apply_batch(self.connect, self.id_map, table, partial(self._live, table=table), list(records),
                           self._timeouts[0])

    # -- reads -------------------------------------------------------------------------------------

    def rows(self, entity: Entity) -> list[dict[str, Any]]:
        """Every row under canonical names, its carried fields only, as stored (the id as text)."""
        if not self.carries(entity):
            return []
        table = self.table(entity)
        with self.connect() as conn:
            self._live(conn, table)
            read_any_timestamp(conn)  # one row out of Python's range must not stop the read
            return conn.execute(sql.SQL("select {} from {} t order by t.{}").format(
                table.select_list(), table.ident, table.id_column)).fetchall()

    def store_ids(self, entity: Entity, after: str | None, limit: int) -> list[str]:
        """The ids (as text) of up to `limit` rows after `after`, in the id column's order: a keyset page on
        the primary key, so listing a large table holds one page of ids, not its rows."""
        if not self.carries(entity):
            return []
        table = self.table(entity)
        where: sql.Composable = sql.SQL("")
        params: tuple[Any, ...] = (limit,)
        if after is not None:
            where = sql.SQL("where t.{} > %s::{}").format(table.id_column, sql.SQL(table.id_type))
            params = (after, limit)
        with self.connect() as conn:
            self._live(conn, table)
            query = sql.SQL("select t.{id}::text as id from {t} t {where} order by t.{id} limit %s")
            rows = conn.execute(query.format(id=table.id_column, t=table.ident, where=where), params).fetchall()
        return [r["id"] for r in rows]

    def refresh(self, entity: Entity, store_ids: Sequence[str]) -> dict[str, RawChange]:
        """Rows read as they are now, as changes (for reconciliation); a missing row is a delete."""
        now = datetime.now(timezone.utc)
        found: dict[str, RawChange] = {}
        if self.carries(entity):
            table = self.table(entity)
            with self.connect() as conn:
                self._live(conn, table)
                read_any_timestamp(conn)
                rows = conn.execute(sql.SQL("""
                    select {cols}, coalesce(v.version, 0) as sync_version, v.modified_at as written_at
                    from {t} t left join {versions} v on v.pk = t.{id}
                    where t.{id} = any({ids})""").format(
                    cols=table.select_list(), t=table.ident, versions=row_versions(table), id=table.id_column,
                    ids=table.ids_param()), (list(store_ids),)).fetchall()
            data = [{k: v for k, v in row.items() if k not in ("sync_version", "written_at")} for row in rows]
            translate_references(entity, data, self.id_map, to_store=False)
            self._canonical_ids(table, data)  # as captured: a bigint or text id is no uuid to the contract
            found = {row["id"]: RawChange(
                record_id=row["id"], deleted=False, row=canonical, modified_at=row["written_at"] or now,
                event_key=f"read:{row['id']}:{row['sync_version']}", store_record_id=row["id"],
                base_version=row["sync_version"]) for row, canonical in zip(rows, data)}
        return {i: found.get(i) or RawChange(record_id=i, deleted=True, row={"id": i}, modified_at=now,
                                             event_key=f"gone:{i}", store_record_id=i) for i in store_ids}

    def inventory(self, entity: Entity) -> dict[str, str]:
        """Record id -> content hash of every row, over the fields this store carries; ids (the row's and
        its references') canonical where the hub knows them."""
        rows = self.rows(entity)
        fields = self.table(entity).fields if rows else []
        translate_references(entity, rows, self.id_map, to_store=False)
        record_ids = self.id_map.to_canonical(entity.name, [r["id"] for r in rows])
        out = {}
        for row in rows:
            record_id = record_ids.get(row["id"], row["id"])
            try:
                out[record_id] = content_hash(canonical_record(entity, row, fields))
            except CanonicalValueError as exc:
                out[record_id] = f"invalid: {exc}"
        return out

    def compare_with_hub(self, entity: Entity, hub_records: dict[str, tuple[int, dict[str, Any] | None]]
                         ) -> ConsistencyReport:
        """The inventory against the hub's live records, both over the fields this store carries."""
        if not self.carries(entity):
            return compare_hashes(entity.name, {}, {})
        return compare_hashes(entity.name, self.inventory(entity),
                              live_hashes(entity, hub_records, self.table(entity).fields))

    def api_stats(self) -> dict[str, Any]:
        return {}

    def check(self) -> Health:
        """Connected, and allowed to use the sync's schema (or to create it, before the first install)."""
        try:
            with self.connect() as conn:
                info = one_row(conn.execute(
                    """select current_user as role, version() as version,
                              case when to_regnamespace(%s) is null
                                   then has_database_privilege(current_database(), 'CREATE')
                                   else has_schema_privilege(current_user, %s, 'USAGE') end as may_use""",
                    (CDC_SCHEMA, CDC_SCHEMA)))
        except psycopg.Error as exc:
            return Health(False, f"cannot connect: {type(exc).__name__}: {_first_line(exc)}")
        if not info["may_use"]:
            return Health(False, f"role {info['role']} may neither use nor create the schema {CDC_SCHEMA}",
                          {"role": info["role"]})
        return Health(True, f"connected as {info['role']}", {"role": info["role"],
                                                             "server": info["version"].split(",")[0]})


def _canonical_row(table: MappedTable, pk: str, row_data: dict[str, Any]) -> dict[str, Any]:
    """A change-log row (the app row as jsonb) under canonical names: the id and the carried fields only."""
    return {"id": pk, **{name: row_data.get(column) for name, column in table.mapping.columns.items()}}


def _parameters(dsn: str) -> dict[str, Any]:
    """The connection string's parameters; none of a malformed one (connecting says what is wrong)."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return {}


def _first_line(exc: BaseException) -> str:
    return redact_text(str(exc).splitlines()[0] if str(exc) else "")
