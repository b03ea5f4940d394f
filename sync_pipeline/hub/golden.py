"""Golden records with their history, and what each store holds of them (the record state)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from psycopg.rows import DictRow

from sync_pipeline.engine.policy import REASSERTED_ORIGIN
from sync_pipeline.engine.records import NEVER_HELD, GoldenRecord, StoreState
from sync_pipeline.hub.connection import Conn, HubConnection, jsonb_or_null
from sync_pipeline.hub.runs import RecordOutcome, record_outcomes


def golden_from_row(row: DictRow) -> GoldenRecord:
    return GoldenRecord(
        entity=row["entity"], record_id=str(row["record_id"]), version=row["version"], data=row["data"],
        deleted=row["deleted"], content_hash=row["content_hash"], origin_store=row["origin_store"],
        origin_modified_at=row["origin_modified_at"],
    )


def write_golden(conn: Conn, g: GoldenRecord, run_id: str | None) -> None:
    """The new current version, and the same version in the history (the base of later three-way merges)."""
    values = (g.entity, g.record_id, g.version, jsonb_or_null(g.data), g.deleted, g.content_hash,
              g.origin_store, g.origin_modified_at)
    conn.execute(
        """insert into sync.golden (entity, record_id, version, data, deleted, content_hash, origin_store,
                                    origin_modified_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (entity, record_id) do update set version = excluded.version, data = excluded.data,
             deleted = excluded.deleted, content_hash = excluded.content_hash,
             origin_store = excluded.origin_store, origin_modified_at = excluded.origin_modified_at,
             updated_at = now()""", values)
    conn.execute(
        """insert into sync.golden_history (entity, record_id, version, data, deleted, content_hash,
                                            origin_store, origin_modified_at, run_id)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s)""", (*values, run_id))


def store_state(conn: Conn, entity: str, record_id: str, store: str) -> StoreState:
    row = conn.execute(
        """select seen_version, seen_hash, written_version from sync.record_state
           where entity = %s and record_id = %s and store = %s""", (entity, record_id, store)).fetchone()
    return StoreState(**row) if row else NEVER_HELD


def set_state(conn: Conn, entity: str, record_id: str, store: str, version: int, digest: str | None,
              store_record_id: str | None) -> None:
    """What the store holds after a change of its own was resolved (we wrote nothing to it, so its
    written version stays)."""
    conn.execute(
        """insert into sync.record_state (entity, record_id, store, store_record_id, seen_version, seen_hash)
           values (%s, %s, %s, %s, %s, %s)
           on conflict (entity, record_id, store) do update set seen_version = excluded.seen_version,
             seen_hash = excluded.seen_hash,
             store_record_id = coalesce(excluded.store_record_id, sync.record_state.store_record_id),
             updated_at = now()""", (entity, record_id, store, store_record_id, version, digest))


class GoldenRecords(HubConnection):
    """Reads of the golden records for publishing and checks, and their per-store state."""

    def unseen_by(self, store: str, entity: str, limit: int, after: str | None = None) -> list[GoldenRecord]:
        """Golden records whose latest version the store has not seen, in record id order."""
        with self.connect() as conn:
            rows = conn.execute(
                """select g.* from sync.golden g
                   left join sync.record_state s
                     on s.entity = g.entity and s.record_id = g.record_id and s.store = %s
                   where g.entity = %s and (s.seen_version is null or s.seen_version < g.version)
                     and (%s::uuid is null or g.record_id > %s::uuid)
                   order by g.record_id limit %s""", (store, entity, after, after, limit)).fetchall()
            return [golden_from_row(r) for r in rows]

    def mark_seen(self, store: str, records: Sequence[GoldenRecord], store_ids: dict[str, str] | None = None,
                  run_id: str | None = None) -> None:
        """Record that the store now holds these versions (and under which id, if it has its own)."""
        store_ids = store_ids or {}
        with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                """insert into sync.record_state (entity, record_id, store, store_record_id, seen_version,
                                                  seen_hash, written_version)
                   values (%s, %s, %s, %s, %s, %s, %s)
                   on conflict (entity, record_id, store) do update set
                     seen_version = greatest(sync.record_state.seen_version, excluded.seen_version),
                     written_version = greatest(sync.record_state.written_version, excluded.written_version),
                     seen_hash = excluded.seen_hash,
                     store_record_id = coalesce(excluded.store_record_id, sync.record_state.store_record_id),
                     updated_at = now()""",
                [(g.entity, g.record_id, store, store_ids.get(g.record_id), g.version, g.content_hash,
                  g.version) for g in records])
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
            rows = conn.execute("""select * from sync.golden where entity = %s and record_id = any(%s::uuid[])
                                   for update""", (entity, list(record_ids))).fetchall()
            for row in rows:
                current = golden_from_row(row)
                reasserted = replace(current, version=current.version + 1, origin_store=REASSERTED_ORIGIN)
                write_golden(conn, reasserted, run_id)
            return len(rows)
