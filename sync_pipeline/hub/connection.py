"""The hub's database connection, shared by every part of the hub.

Every unit of hub work is one transaction from `HubConnection.connect()`, under the hub's lock and statement
timeouts. With a pool (the Dagster resource opens one per run or tick) connections are reused; without one
each unit connects anew. Inside `rolled_back()` every unit is a savepoint on one shared connection whose
transaction is rolled back at the end: a whole sync can run against the hub and leave no trace.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeAlias

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from sync_pipeline.hub.migrations import migrate
from sync_pipeline.postgres_json import use_fast_json
from sync_pipeline.redaction import call_masked, dsn_secrets

Conn: TypeAlias = psycopg.Connection[DictRow]

# The connection of the `rolled_back()` block this context is in, with the hub URL it belongs to.
_ROLLED_BACK: ContextVar[tuple[str, Conn] | None] = ContextVar("hub_rolled_back", default=None)


def one(cursor: psycopg.Cursor[DictRow]) -> DictRow:
    """The row of a statement that always returns one (an aggregate, an insert ... returning)."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("the statement returned no row")
    return row


def as_uuid(text: str) -> uuid.UUID | None:
    """The uuid a text spells, or None: record ids held as text may be a store's own ids."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def jsonb_or_null(value: Any) -> Jsonb | None:
    """None stays SQL NULL (a tombstone's data), anything else is stored as JSON."""
    return Jsonb(value) if value is not None else None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # uuid.UUID, Decimal: their text is what Postgres reads


# What the hub writes as JSON: datetimes as their isoformat, uuids and Decimals as their text.
JSON_DUMPS = partial(json.dumps, default=_json_default)


def json_rows(rows: Iterable[Mapping[str, Any]]) -> Jsonb:
    """Rows as one JSON document for `jsonb_to_recordset`: one parameter however many rows (arrays of jsonb
    parameters cost several times more to send and parse)."""
    return Jsonb(list(rows), dumps=JSON_DUMPS)


def copy_rows(conn: Conn, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Append rows to a hub table with one COPY (the table and column names are the hub's own); none for no
    rows (a round trip per batch for nothing: a first sync's resolve has no conflicts to record)."""
    remaining = iter(rows)
    if (first := next(remaining, None)) is None:
        return
    statement = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier("sync", table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write_row(first)
        for row in remaining:
            copy.write_row(row)


def copy_new_rows(conn: Conn, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bool:
    """Rows new to a hub table put in by one COPY under a savepoint, cheaper than an upsert; False when there
    were none, or one was there after all (a replay, a row inserted meanwhile): the caller's upsert then
    takes them all."""
    if not rows:
        return False
    try:
        with conn.transaction():
            copy_rows(conn, table, columns, rows)
    except psycopg.errors.UniqueViolation:
        return False
    return True


# Bounded waits on the hub (the defaults of `SyncSettings` and of the hub's resource).
HUB_LOCK_TIMEOUT_MS = 30_000
HUB_STATEMENT_TIMEOUT_MS = 300_000
HUB_CONNECT_TIMEOUT_S = 10
RANDOM_PAGE_COST = "1.1"  # the usual setting for data on SSD or in memory


@dataclass(frozen=True)
class HubTimeouts:
    """A statement waiting on a lock, or running, longer than this fails; so does a connection attempt."""

    lock_timeout_ms: int = HUB_LOCK_TIMEOUT_MS
    statement_timeout_ms: int = HUB_STATEMENT_TIMEOUT_MS
    connect_timeout_s: int = HUB_CONNECT_TIMEOUT_S


def connect_kwargs(timeouts: HubTimeouts) -> dict[str, Any]:
    # No prepared statements: the hub may sit behind a transaction pooler (PgBouncer, Supavisor), where a
    # statement prepared on one server connection is unknown on the next.
    return {"row_factory": dict_row, "prepare_threshold": None, "connect_timeout": timeouts.connect_timeout_s}


def open_pool(dsn: str, timeouts: HubTimeouts, max_size: int) -> ConnectionPool[Conn]:
    """A pool of hub connections for one process: one opened at once, more only while units of work overlap
    (a nested `connect()`), none kept past `max_idle`. Closed by its owner (the hub's Dagster resource)."""
    pool: ConnectionPool[Conn] = ConnectionPool(
        dsn, kwargs=connect_kwargs(timeouts), configure=use_fast_json, min_size=1, max_size=max_size,
        max_idle=300, timeout=3 * timeouts.connect_timeout_s, name="sync-hub", open=False)
    pool.open(wait=True, timeout=3 * timeouts.connect_timeout_s)
    return pool


class HubConnection:
    """The hub database: one transaction per unit of work, from the pool when there is one."""

    def __init__(self, dsn: str, *, pool: ConnectionPool[Conn] | None = None,
                 timeouts: HubTimeouts = HubTimeouts()) -> None:
        self._dsn = dsn
        self._secrets = dsn_secrets(dsn)
        self._pool = pool
        self._timeouts = timeouts

    @contextmanager
    def _session(self) -> Iterator[Conn]:
        """A connection whose work is committed when the block ends (rolled back on an error)."""
        if self._pool is not None:
            with self._pool.connection() as pooled:
                yield pooled
            return
        # A malformed URL's password, which libpq quotes in its error, is masked there.
        conn = call_masked(lambda: psycopg.connect(self._dsn, **connect_kwargs(self._timeouts)), *self._secrets)
        use_fast_json(conn)
        with conn:
            yield conn

    def _bound_waits(self, conn: Conn) -> None:
        # Local to the transaction: a transaction pooler refuses startup options and would hand a session
        # setting to other clients. The hub's batches look up a few hundred keys in tables that stay cached:
        # at the default random_page_cost (4, for spinning disks) the planner scanned whole tables for them
        # instead, once per batch, so a first sync's resolve grew with batches x records. No JIT: a check's
        # read of a bulk sync's records was costed high enough to compile (a quarter of a second each), and
        # its index lookups gain nothing from it.
        conn.execute("select set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true), "
                     "set_config('random_page_cost', %s, true), set_config('jit', 'off', true)",
                     (f"{self._timeouts.lock_timeout_ms}ms", f"{self._timeouts.statement_timeout_ms}ms",
                      RANDOM_PAGE_COST))

    @contextmanager
    def connect(self) -> Iterator[Conn]:
        shared = _ROLLED_BACK.get()
        if shared is not None and shared[0] == self._dsn:
            conn = shared[1]
            with conn.transaction():  # a savepoint: an error undoes this unit only, as its own transaction would
                yield conn
            return
        with self._session() as conn:
            self._bound_waits(conn)
            yield conn

    def holds_at_once(self, sessions: int) -> bool:
        """Whether this many units of work can each hold a connection at once: not inside `rolled_back`
        (where every unit is a savepoint on one connection), nor beyond the pool's size."""
        shared = _ROLLED_BACK.get()
        if shared is not None and shared[0] == self._dsn:
            return False
        return self._pool is None or self._pool.max_size >= sessions

    @contextmanager
    def rolled_back(self) -> Iterator[None]:
        """Run everything inside against the hub in one transaction that is rolled back at the end: every
        `connect()` of a hub on the same database, in this context, is a savepoint on one shared connection.
        Nested blocks share the outer one."""
        if (shared := _ROLLED_BACK.get()) is not None and shared[0] == self._dsn:
            yield
            return
        with self._session() as conn, conn.transaction(force_rollback=True):
            self._bound_waits(conn)
            token = _ROLLED_BACK.set((self._dsn, conn))
            try:
                yield
            finally:
                _ROLLED_BACK.reset(token)

    def migrate(self) -> list[int]:
        with self.connect() as conn:
            return migrate(conn)
