"""Golden records with their history, and what each store holds of them (the record state)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from psycopg.rows import DictRow

from sync_pipeline.engine.policy import REASSERTED_ORIGIN
from sync_pipeline.engine.records import GoldenRecord, StoreState
from sync_pipeline.hub.connection import (
    Conn,
    HubConnection,
    copy_new_rows,
    copy_rows,
    json_rows,
    jsonb_or_null,
    one,
)
from sync_pipeline.hub.migrations import PENDING_LOCK_KEY
from sync_pipeline.hub.runs import RecordOutcome, record_outcomes


def golden_from_row(row: DictRow) -> GoldenRecord:
    return GoldenRecord(
        entity=row["entity"], record_id=str(row["record_id"]), version=row["version"], data=row["data"],
        deleted=row["deleted"], content_hash=row["content_hash"], origin_store=row["origin_store"],
        origin_modified_at=row["origin_modified_at"],
    )


_GOLDEN_COLUMNS = ("entity", "record_id", "version", "data", "deleted", "content_hash", "origin_store",
                   "origin_modified_at")


def _golden_values(g: GoldenRecord) -> tuple[Any, ...]:
    return (g.entity, g.record_id, g.version, jsonb_or_null(g.data), g.deleted, g.content_hash, g.origin_store,
            g.origin_modified_at)


def write_golden(conn: Conn, versions: Sequence[GoldenRecord], run_id: str | None,
                 new: Collection[str] = frozenset()) -> None:
    """New golden versions, oldest first: the latest of each record becomes current (one statement), and
    every one goes into the history (one COPY), the base of later three-way merges. The golden table's
    triggers mark them pending for every store that has not seen them. The records in `new` (the hub held
    none of them when the batch read it) go in by COPY, unless one was inserted meanwhile."""
    if not versions:
        return
    latest = sorted({g.record_id: g for g in versions}.values(), key=lambda g: g.record_id)  # lock order
    fresh = [_golden_values(g) for g in latest if g.record_id in new]
    if copy_new_rows(conn, "golden", _GOLDEN_COLUMNS, fresh):
        latest = [g for g in latest if g.record_id not in new]
    if latest:
        conn.execute(
            """insert into sync.golden (entity, record_id, version, data, deleted, content_hash, origin_store,
                                        origin_modified_at)
               select * from jsonb_to_recordset(%s) as g(entity text, record_id uuid, version bigint,
                 data jsonb, deleted boolean, content_hash text, origin_store text,
                 origin_modified_at timestamptz)
               on conflict (entity, record_id) do update set version = excluded.version, data = excluded.data,
                 deleted = excluded.deleted, content_hash = excluded.content_hash,
                 origin_store = excluded.origin_store, origin_modified_at = excluded.origin_modified_at,
                 updated_at = now()""", (json_rows(vars(g) for g in latest),))
    copy_rows(conn, "golden_history", (*_GOLDEN_COLUMNS, "run_id"),
              ((*_golden_values(g), run_id) for g in versions))


def store_states(conn: Conn, entity: str, record_ids: Sequence[str]) -> dict[tuple[str, str], StoreState]:
    """(record id, store) -> what the store holds, for every store that holds any of these records."""
    rows = conn.execute(
        """select record_id, store, seen_version, seen_hash, written_version, store_record_id
           from sync.record_state where entity = %s and record_id = any(%b::uuid[])""",
        (entity, list(record_ids))).fetchall()
    return {(str(r["record_id"]), r["store"]): StoreState(r["seen_version"], r["seen_hash"], r["written_version"],
                                                          r["store_record_id"]) for r in rows}


_STATE_COLUMNS = ("entity", "record_id", "store", "store_record_id", "seen_version", "seen_hash")


def set_states(conn: Conn, entity: str, states: Mapping[tuple[str, str], StoreState],
               new: Collection[tuple[str, str]] = frozenset()) -> None:
    """What stores hold after changes of their own were resolved (we wrote nothing to them, so their written
    versions stay), in one statement; the states in `new` (none held when the batch read them) by COPY."""
    keys = sorted(states)  # in lock order
    if copy_new_rows(conn, "record_state", _STATE_COLUMNS, [
            (entity, record_id, store, state.store_record_id, state.seen_version, state.seen_hash)
            for (record_id, store), state in ((k, states[k]) for k in keys if k in new)]):
        keys = [k for k in keys if k not in new]
    if not keys:
        return
    conn.execute(
        """insert into sync.record_state (entity, record_id, store, store_record_id, seen_version, seen_hash)
           select %s, record_id, store, store_record_id, seen_version, seen_hash
           from jsonb_to_recordset(%s) as s(record_id uuid, store text, store_record_id text,
                                            seen_version bigint, seen_hash text)
           on conflict (entity, record_id, store) do update set seen_version = excluded.seen_version,
             seen_hash = excluded.seen_hash,
             store_record_id = coalesce(excluded.store_record_id, sync.record_state.store_record_id),
             updated_at = now()""",
        (entity, json_rows({"record_id": record_id, "store": store, **vars(states[(record_id, store)])}
                           for record_id, store in keys)))


class GoldenRecords(HubConnection):
    """Reads of the golden records for publishing and checks, and their per-store state."""

    def unseen_by(self, store: str, entity: str, limit: int, after: str | None = None) -> list[GoldenRecord]:
        """Golden records whose latest version the store has not seen, in record id order: read from the
        store's pending records (an index range), never from a scan of the hub."""
        with self.connect() as conn:
            _register_target(conn, store, entity)
            while True:
                # The page's ids first, from the pending index in order: one query joining the golden rows
                # was planned as a hash join over every pending row, sorted, for each page (quadratic in a
                # first sync's pages).
                page = [r["record_id"] for r in conn.execute(
                    """select record_id from sync.publish_pending
                       where store = %s and entity = %s and (%s::uuid is null or record_id > %s::uuid)
                       order by record_id limit %s""", (store, entity, after, after, limit))]
                # The store's version of each record by a lookup of its key: as a join, the states were
                # planned from statistics taken before the store had any (one row), as a nested loop over all
                # of them per record (a 1M first sync's publish slowed to 170 records/s by 90k).
                rows = conn.execute(
                    """select g.* from sync.golden g
                       where g.entity = %s and g.record_id = any(%b::uuid[])
                         and coalesce((select s.seen_version from sync.record_state s
                                       where s.entity = g.entity and s.record_id = g.record_id
                                         and s.store = %s), 0) < g.version
                       order by g.record_id""", (entity, page, store)).fetchall()
                if rows or len(page) < limit:
                    return [golden_from_row(r) for r in rows]
                after = str(page[-1])  # a whole page the store has seen meanwhile: the next one

    def unseen_count(self, store: str, entity: str) -> int:
        """How many records the store has not seen the latest version of (counted on the pending index)."""
        with self.connect() as conn:
            _register_target(conn, store, entity)
            count: int = one(conn.execute("""select count(*) as n from sync.publish_pending
                                             where store = %s and entity = %s""", (store, entity)))["n"]
            return count

    def golden_counts(self, entity: str) -> dict[str, int]:
        """Live and deleted golden records of the entity, counted without loading them."""
        with self.connect() as conn:
            row = one(conn.execute("""select count(*) filter (where not deleted) as live,
                                             count(*) filter (where deleted) as deleted
                                      from sync.golden where entity = %s""", (entity,)))
            return {"live": row["live"], "deleted": row["deleted"]}

    def mark_seen(self, store: str, records: Sequence[GoldenRecord], store_ids: dict[str, str] | None = None,
                  run_id: str | None = None) -> None:
        """Record that the store now holds these versions (and under which id, if it has its own)."""
        if not records:
            return
        store_ids = store_ids or {}
        newest: dict[tuple[str, str], GoldenRecord] = {}
        for g in records:
            if (seen := newest.get((g.entity, g.record_id))) is None or seen.version < g.version:
                newest[(g.entity, g.record_id)] = g
        ordered = [newest[k] for k in sorted(newest)]  # lock order, one row each
        with self.connect() as conn, conn.transaction():
            conn.execute(
                """insert into sync.record_state (entity, record_id, store, store_record_id, seen_version,
                                                  seen_hash, written_version)
                   select entity, record_id, %s, store_record_id, version, content_hash, version
                   from jsonb_to_recordset(%s) as m(entity text, record_id uuid, store_record_id text,
                                                    version bigint, content_hash text)
                   on conflict (entity, record_id, store) do update set
                     seen_version = greatest(sync.record_state.seen_version, excluded.seen_version),
                     written_version = greatest(sync.record_state.written_version, excluded.written_version),
                     seen_hash = excluded.seen_hash,
                     store_record_id = coalesce(excluded.store_record_id, sync.record_state.store_record_id),
                     updated_at = now()""",
                (store, json_rows({"entity": g.entity, "record_id": g.record_id, "version": g.version,
                                   "store_record_id": store_ids.get(g.record_id), "content_hash": g.content_hash}
                                  for g in ordered)))
            record_outcomes(conn, [RecordOutcome(run_id, store, g.entity, g.record_id, "publish",
                                                 "deleted" if g.deleted else "applied", version=g.version)
                                   for g in records])

    def golden_snapshot(self, entity: str) -> dict[str, tuple[int, dict[str, Any] | None]]:
        """Record id -> (version, data or None when deleted) of every golden record."""
        with self.connect() as conn:
            rows = conn.execute("select record_id, version, data, deleted from sync.golden where entity = %s",
                                (entity,)).fetchall()
            return {str(r["record_id"]): (r["version"], None if r["deleted"] else r["data"]) for r in rows}

    def held_by(self, store: str, entity: str) -> dict[str, datetime]:
        """Records the store has held (we wrote them there, or they came from there), with when it last
        did."""
        with self.connect() as conn:
            rows = conn.execute("""select record_id, updated_at from sync.record_state
                                   where store = %s and entity = %s and seen_version > 0""", (store, entity))
            return {str(r["record_id"]): r["updated_at"] for r in rows}

    def reassert(self, entity: str, record_ids: Sequence[str], run_id: str | None) -> int:
        """New versions of golden records with unchanged content, so every store is sent them again
        (reconciliation's repair of a store that drifted: version guards would refuse the same version)."""
        with self.connect() as conn, conn.transaction():
            rows = conn.execute("""select * from sync.golden where entity = %s and record_id = any(%b::uuid[])
                                   order by record_id for update""", (entity, list(record_ids))).fetchall()
            write_golden(conn, [replace(golden_from_row(row), version=row["version"] + 1,
                                        origin_store=REASSERTED_ORIGIN) for row in rows], run_id)
            return len(rows)


def _register_target(conn: Conn, store: str, entity: str) -> None:
    """A store's first publish of an entity registers it as a target and fills its pending records from one
    scan; from then on the triggers keep them."""
    if conn.execute("select from sync.publish_targets where store = %s and entity = %s",
                    (store, entity)).fetchone() is not None:
        return
    conn.execute("select pg_advisory_xact_lock(%s, %s)", PENDING_LOCK_KEY)
    if conn.execute("""insert into sync.publish_targets (store, entity) values (%s, %s)
                       on conflict do nothing returning store""", (store, entity)).fetchone() is None:
        return  # registered meanwhile
    conn.execute(
        """insert into sync.publish_pending (store, entity, record_id, version)
           select %s, g.entity, g.record_id, g.version from sync.golden g
           left join sync.record_state s on s.entity = g.entity and s.record_id = g.record_id and s.store = %s
           where g.entity = %s and coalesce(s.seen_version, 0) < g.version""", (store, store, entity))
    # The reads that follow, in this transaction, would be planned for the table as last analyzed (empty
    # before a first sync): seconds per read of a page instead of milliseconds.
    conn.execute("analyze sync.publish_pending")
