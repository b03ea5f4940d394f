"""Queries over the hub's `sync` schema. Everything that must survive a crash is written here, in the same
transaction as the change it describes."""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator, Sequence

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sync_pipeline.engine.records import Change, GoldenRecord, Op
from sync_pipeline.engine.resolver import MERGED_ORIGIN, Outcome, Resolution, resolve
from sync_pipeline.hub.migrations import migrate
from sync_pipeline.redaction import redact, redact_text
from sync_pipeline.model.entities import Entity


REASSERTED_ORIGIN = "reconciliation"  # a version the hub re-sent unchanged, from no store


@dataclass
class CapturedChange:
    """A validated change ready for the inbox."""

    record_id: str | None  # None: the hub resolves it from the store's id (id-mapping stores)
    store_record_id: str
    op: Op
    data: dict[str, Any] | None
    modified_at: datetime
    event_key: str
    base_version: int | None = None


@dataclass
class QuarantinedRecord:
    store_record_id: str | None
    event_key: str
    reason: str
    failures: list[dict[str, Any]]
    payload: dict[str, Any]


@dataclass
class ResolveStats:
    read: int = 0
    applied: int = 0
    echoes: int = 0
    conflicts: int = 0
    duplicates: int = 0  # already in the processed-event ledger
    quarantined: int = 0
    noops: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


def _golden(row: dict[str, Any]) -> GoldenRecord:
    return GoldenRecord(
        entity=row["entity"], record_id=str(row["record_id"]), version=row["version"], data=row["data"],
        deleted=row["deleted"], content_hash=row["content_hash"], origin_store=row["origin_store"],
        origin_modified_at=row["origin_modified_at"],
    )


class Hub:
    """The hub database. Connections are short-lived: one per unit of work."""

    def __init__(self, dsn: str, **connect_kwargs: Any) -> None:
        self._dsn = dsn
        self._connect_kwargs = {"connect_timeout": 10, **connect_kwargs}

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self._dsn, row_factory=dict_row, **self._connect_kwargs) as conn:
            yield conn

    def migrate(self) -> list[int]:
        with self.connect() as conn:
            return migrate(conn)

    # -- runs and outcomes -------------------------------------------------------------------------

    def start_run(self, run_id: str, trigger: str) -> None:
        with self.connect() as conn:
            conn.execute(
                """insert into sync.runs (run_id, trigger) values (%s, %s)
                   on conflict (run_id) do nothing""", (run_id, trigger))

    def add_run_counts(self, run_id: str, step: str, counts: dict[str, Any]) -> None:
        with self.connect() as conn:
            conn.execute(
                """insert into sync.runs (run_id, counts) values (%s, %s)
                   on conflict (run_id) do update set counts = sync.runs.counts || excluded.counts""",
                (run_id, Jsonb({step: counts})))

    def finish_run(self, run_id: str, status: str) -> None:
        with self.connect() as conn:
            conn.execute(
                """insert into sync.runs (run_id, status, finished_at) values (%s, %s, now())
                   on conflict (run_id) do update set status = excluded.status, finished_at = now()""",
                (run_id, status))

    def recent_conflicts(self, entity: str, limit: int = 10) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(
                """select id, detected_at, record_id, incoming_store, golden_store, winner_store, resolution,
                          differing_fields from sync.conflicts where entity = %s order by id desc limit %s""",
                (entity, limit)).fetchall()

    def recent_errors(self, store: str, entity: str, limit: int = 10) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(
                """select id, occurred_at, record_id, operation, error_class, message from sync.errors
                   where store = %s and entity = %s and resolved_at is null order by id desc limit %s""",
                (store, entity, limit)).fetchall()

    @staticmethod
    def _outcomes(conn: psycopg.Connection, rows: Sequence[tuple]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(
                    """insert into sync.record_outcomes
                       (run_id, store, entity, record_id, event_key, stage, outcome, version, detail)
                       values (%s, %s, %s, %s, %s, %s, %s, %s, %s)""", rows)

    # -- the error reporter ------------------------------------------------------------------------

    def record_error(self, *, store: str, operation: str, error: BaseException, run_id: str | None = None,
                     entity: str | None = None, record_id: str | None = None, attempt: int = 1,
                     payload: Any = None) -> int:
        """Record a failure with its context; secrets are removed from the message and the payload."""
        message = redact_text(f"{error}")[:4000] or type(error).__name__
        excerpt = redact({"payload": payload, "trace": traceback.format_exception_only(error)[-1:]})
        with self.connect() as conn:
            row = conn.execute(
                """insert into sync.errors (run_id, store, entity, record_id, operation, attempt,
                                            error_class, message, payload_excerpt)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning id""",
                (run_id, store, entity, record_id, operation, attempt, type(error).__name__, message,
                 Jsonb(excerpt))).fetchone()
            self._outcomes(conn, [(run_id, store, entity or "-", record_id, None, operation, "error", None,
                                   message[:500])])
            return row["id"]

    def resolve_step_errors(self, store: str, entity: str, operation: str) -> None:
        """A step that went through closes the errors of earlier failures of that whole step."""
        with self.connect() as conn:
            conn.execute("""update sync.errors set resolved_at = now()
                            where resolved_at is null and record_id is null
                              and store = %s and entity = %s and operation = %s""", (store, entity, operation))

    def resolve_errors(self, store: str, entity: str, record_ids: Sequence[str]) -> None:
        """Errors of records that have since gone through are marked resolved."""
        if record_ids:
            with self.connect() as conn:
                conn.execute(
                    """update sync.errors set resolved_at = now()
                       where resolved_at is null and store = %s and entity = %s and record_id = any(%s)""",
                    (store, entity, list(record_ids)))

    # -- cursors and capture -----------------------------------------------------------------------

    def get_cursor(self, store: str, entity: str) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute("select position from sync.cursors where store = %s and entity = %s",
                               (store, entity)).fetchone()
            return row["position"] if row else None

    def enqueue(self, store: str, entity: str, changes: Sequence[CapturedChange],
                quarantined: Sequence[QuarantinedRecord], cursor: dict[str, Any] | None,
                run_id: str | None) -> int:
        """Put captured changes in the inbox, invalid ones in quarantine, and advance the cursor,
        all in one transaction. Returns how many changes were new (a replayed change is ignored)."""
        with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
            new = 0
            for c in changes:
                cur.execute(
                    """insert into sync.inbox (store, entity, event_key, kind, record_id, store_record_id,
                                              op, data, base_version, modified_at, run_id)
                       values (%s, %s, %s, 'change', %s, %s, %s, %s, %s, %s, %s)
                       on conflict (store, event_key) do nothing""",
                    (store, entity, c.event_key, c.record_id, c.store_record_id, c.op.value,
                     Jsonb(c.data) if c.data is not None else None, c.base_version, c.modified_at, run_id))
                new += cur.rowcount
            self._quarantine(conn, store, entity, quarantined, run_id)
            # A record that now meets its contract leaves quarantine.
            cur.execute("""update sync.quarantine set resolved_at = now()
                           where store = %s and entity = %s and record_id = any(%s) and resolved_at is null""",
                        (store, entity, [c.store_record_id for c in changes if c.op is Op.UPSERT]))
            if cursor is not None:
                cur.execute(
                    """insert into sync.cursors (store, entity, position) values (%s, %s, %s)
                       on conflict (store, entity) do update set position = excluded.position,
                         updated_at = now()""", (store, entity, Jsonb(cursor)))
            return new

    def enqueue_webhook(self, store: str, entity: str, event_key: str, store_record_id: str | None,
                        payload: dict[str, Any]) -> bool:
        """Store a received webhook as a hint; False if this event was received before."""
        with self.connect() as conn:
            cur = conn.execute(
                """insert into sync.inbox (store, entity, event_key, kind, store_record_id, payload)
                   values (%s, %s, %s, 'webhook', %s, %s) on conflict (store, event_key) do nothing""",
                (store, entity, event_key, store_record_id, Jsonb(payload)))
            return cur.rowcount == 1

    def latest_hint(self) -> int:
        """The id of the newest webhook hint still waiting (0 if none), for the inbox sensor."""
        with self.connect() as conn:
            return conn.execute("""select coalesce(max(id), 0) as id from sync.inbox
                                   where kind = 'webhook' and applied_at is null""").fetchone()["id"]

    def pending_webhooks(self, store: str, entity: str, limit: int) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(
                """select id, event_key, store_record_id, payload, received_at from sync.inbox
                   where store = %s and entity = %s and kind = 'webhook' and applied_at is null
                   order by id limit %s""", (store, entity, limit)).fetchall()

    def fulfil_hints(self, store: str, entity: str, changes: Sequence[CapturedChange],
                     quarantined: Sequence[QuarantinedRecord], run_id: str | None) -> None:
        """Turn webhook hints into changes holding the re-read records; a record that fails its contract
        goes to quarantine and its hint is closed. One transaction."""
        with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
            for c in changes:
                cur.execute(
                    """update sync.inbox set kind = 'change', record_id = %s, op = %s, data = %s,
                         base_version = %s, modified_at = %s, run_id = %s
                       where store = %s and event_key = %s and kind = 'webhook'""",
                    (c.record_id, c.op.value, Jsonb(c.data) if c.data is not None else None, c.base_version,
                     c.modified_at, run_id, store, c.event_key))
            cur.executemany("""update sync.inbox set applied_at = now(), run_id = %s
                               where store = %s and event_key = %s and kind = 'webhook'""",
                            [(run_id, store, q.event_key) for q in quarantined])
            self._quarantine(conn, store, entity, quarantined, run_id)

    @classmethod
    def _quarantine(cls, conn: psycopg.Connection, store: str, entity: str,
                    quarantined: Sequence[QuarantinedRecord], run_id: str | None, stage: str = "capture") -> None:
        with conn.cursor() as cur:
            cur.executemany(
                """insert into sync.quarantine (run_id, store, entity, record_id, event_key, reason, failures,
                                               payload)
                   values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict (store, entity, event_key) do nothing""",
                [(run_id, store, entity, q.store_record_id, q.event_key, q.reason, Jsonb(redact(q.failures)),
                  Jsonb(redact(q.payload))) for q in quarantined])
        cls._outcomes(conn, [(run_id, store, entity, q.store_record_id, q.event_key, stage, "quarantined", None,
                              q.reason[:500]) for q in quarantined])

    def id_map(self, store: str) -> "HubIdMap":
        return HubIdMap(self, store)

    # -- id map ------------------------------------------------------------------------------------

    def record_ids_for(self, store: str, entity: str, store_record_ids: Sequence[str]) -> dict[str, str]:
        """Store id -> canonical id, for the records of an id-mapping store that the hub knows."""
        with self.connect() as conn:
            rows = conn.execute(
                """select store_record_id, record_id from sync.record_state
                   where store = %s and entity = %s and store_record_id = any(%s)""",
                (store, entity, list(store_record_ids))).fetchall()
            return {r["store_record_id"]: str(r["record_id"]) for r in rows}

    def store_ids_for(self, store: str, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        """Canonical id -> the store's id, where the store knows the record under another id."""
        with self.connect() as conn:
            rows = conn.execute(
                """select record_id, store_record_id from sync.record_state
                   where store = %s and entity = %s and record_id = any(%s::uuid[])
                     and store_record_id is not null""", (store, entity, list(record_ids))).fetchall()
            return {str(r["record_id"]): r["store_record_id"] for r in rows}

    # -- resolve -----------------------------------------------------------------------------------

    def resolve_pending(self, entity: Entity, run_id: str | None, priority: Sequence[str],
                        batch_size: int = 500) -> ResolveStats:
        """Apply the inbox to the golden records, batch by batch, each batch in one transaction."""
        stats = ResolveStats()
        while True:
            with self.connect() as conn, conn.transaction():
                rows = conn.execute(
                    """select * from sync.inbox where entity = %s and kind = 'change' and applied_at is null
                       order by id limit %s for update skip locked""", (entity.name, batch_size)).fetchall()
                for row in rows:
                    self._resolve_one(conn, entity, row, run_id, priority, stats)
                    conn.execute("update sync.inbox set applied_at = now() where id = %s", (row["id"],))
            if len(rows) < batch_size:
                return stats

    def _resolve_one(self, conn: psycopg.Connection, entity: Entity, row: dict[str, Any], run_id: str | None,
                     priority: Sequence[str], stats: ResolveStats) -> None:
        store, event_key = row["store"], row["event_key"]
        stats.read += 1
        claimed = conn.execute(
            """insert into sync.processed_events (store, event_key, run_id) values (%s, %s, %s)
               on conflict do nothing returning event_key""", (store, event_key, run_id)).fetchone()
        if not claimed:
            stats.duplicates += 1
            self._outcomes(conn, [(run_id, store, entity.name, row["record_id"] and str(row["record_id"]),
                                   event_key, "resolve", "duplicate", None, None)])
            return
        op = Op(row["op"])
        store_record_id = row["store_record_id"]
        record_id = str(row["record_id"]) if row["record_id"] else self._mapped_id(conn, entity, store,
                                                                                   store_record_id)
        if op is Op.UPSERT and entity.natural_key:
            key_value = row["data"].get(entity.natural_key)
            owner = self._natural_key_owner(conn, entity, key_value, record_id)
            if owner:
                linked = self._store_id_of(conn, entity, owner, store)
                if record_id is None and linked in (None, store_record_id):
                    record_id = owner  # the same record, known to the hub under another id: link them
                else:
                    self._quarantine_in_resolve(conn, entity, row, run_id, stats,
                                                f"{entity.natural_key} {key_value!r} already belongs to "
                                                f"record {owner}")
                    return
        if record_id is None:
            record_id = store_record_id  # a record new to the hub keeps the store's id
        current_row = conn.execute(
            "select * from sync.golden where entity = %s and record_id = %s for update",
            (entity.name, record_id)).fetchone()
        current = _golden(current_row) if current_row else None
        state = conn.execute(
            """select seen_version, seen_hash, written_version from sync.record_state
               where entity = %s and record_id = %s and store = %s""",
            (entity.name, record_id, store)).fetchone()
        seen_version = state["seen_version"] if state else 0
        base_version = row["base_version"] if row["base_version"] is not None else seen_version
        # An edit made before our last write to this store was overwritten there: the store holds what
        # we wrote, not this change, whatever the resolution.
        overwritten = row["base_version"] is not None and state is not None and (
            row["base_version"] < state["written_version"])
        if current and base_version < current.version:
            base_version = self._own_base(conn, entity, record_id, base_version, store)
        change = Change(store=store, entity=entity.name, record_id=record_id, op=op, data=row["data"],
                        base_version=base_version, modified_at=row["modified_at"], event_key=event_key,
                        store_record_id=row["store_record_id"])
        base = None
        if current and base_version and base_version < current.version:
            snap = conn.execute(
                """select data from sync.golden_history where entity = %s and record_id = %s and version = %s""",
                (entity.name, record_id, base_version)).fetchone()
            base = snap["data"] if snap else None
        if current and row["base_version"] is None and (
                (state is not None and change.content_hash == state["seen_hash"])
                or (current.origin_store == store and change.modified_at < current.origin_modified_at)):
            # A store without row versions (Twenty) showing a version we wrote to it earlier, or an older
            # snapshot of its own than the hub already took (a late poll behind a webhook): not an edit.
            resolution = Resolution(Outcome.ECHO, None)
        else:
            resolution = resolve(current, change, base, priority)
        result = resolution.golden
        if result is not None:
            self._write_golden(conn, result, run_id)
        if resolution.conflict is not None:
            c = resolution.conflict
            conn.execute(
                """insert into sync.conflicts (run_id, entity, record_id, golden_version, base_version,
                     incoming_store, golden_store, winner_store, resolution, result_version,
                     differing_fields, golden_side, incoming_side)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (run_id, c.entity, c.record_id, c.golden_version, c.base_version, c.incoming_store,
                 c.golden_store, c.winner_store, c.resolution, (result or current).version,
                 c.differing_fields, Jsonb(c.golden_side), Jsonb(c.incoming_side)))
        if resolution.outcome is not Outcome.NOOP:
            final = result or current
            if resolution.store_holds_result(change, current) and not overwritten:
                store_version, store_hash = final.version, final.content_hash
            else:
                store_version, store_hash = seen_version, state["seen_hash"] if state else None
            self._set_state(conn, entity.name, record_id, store, store_version, store_hash, store_record_id)
        counter = {Outcome.APPLIED: "applied", Outcome.ECHO: "echoes", Outcome.CONFLICT: "conflicts",
                   Outcome.NOOP: "noops"}[resolution.outcome]
        setattr(stats, counter, getattr(stats, counter) + 1)
        detail = resolution.conflict.resolution if resolution.conflict else None
        self._outcomes(conn, [(run_id, store, entity.name, record_id, event_key, "resolve",
                               resolution.outcome.value, (result or current).version if (result or current)
                               else None, detail)])

    @staticmethod
    def _own_base(conn: psycopg.Connection, entity: Entity, record_id: str, base: int, store: str) -> int:
        """The base moved past the versions this store itself produced: the store holds those already, so
        only versions from elsewhere make a conflict (and the three-way merge starts from the last own one)."""
        for row in conn.execute(
                """select version, origin_store from sync.golden_history
                   where entity = %s and record_id = %s and version > %s order by version""",
                (entity.name, record_id, base)):
            if row["origin_store"] not in (store, REASSERTED_ORIGIN):  # a reassert changes no content
                break
            base = row["version"]
        return base

    @staticmethod
    def _mapped_id(conn: psycopg.Connection, entity: Entity, store: str, store_record_id: str) -> str | None:
        row = conn.execute("""select record_id from sync.record_state
                              where store = %s and entity = %s and store_record_id = %s""",
                           (store, entity.name, store_record_id)).fetchone()
        return str(row["record_id"]) if row else None

    @staticmethod
    def _store_id_of(conn: psycopg.Connection, entity: Entity, record_id: str, store: str) -> str | None:
        row = conn.execute("""select store_record_id from sync.record_state
                              where entity = %s and record_id = %s and store = %s""",
                           (entity.name, record_id, store)).fetchone()
        return row["store_record_id"] if row else None

    @staticmethod
    def _natural_key_owner(conn: psycopg.Connection, entity: Entity, value: Any,
                           record_id: str | None) -> str | None:
        if value is None:
            return None
        row = conn.execute(
            """select record_id from sync.golden
                where entity = %s and not deleted and data->>%s = %s
                  and (%s::uuid is null or record_id <> %s::uuid) limit 1""",
            (entity.name, entity.natural_key, str(value), record_id, record_id)).fetchone()
        return str(row["record_id"]) if row else None

    def _quarantine_in_resolve(self, conn: psycopg.Connection, entity: Entity, row: dict[str, Any],
                               run_id: str | None, stats: ResolveStats, reason: str) -> None:
        stats.quarantined += 1
        record = QuarantinedRecord(row["store_record_id"], row["event_key"], reason,
                                   [{"check": "unique natural key", "column": entity.natural_key}], row["data"])
        self._quarantine(conn, row["store"], entity.name, [record], run_id, stage="resolve")

    @staticmethod
    def _write_golden(conn: psycopg.Connection, g: GoldenRecord, run_id: str | None) -> None:
        values = (g.entity, g.record_id, g.version, Jsonb(g.data) if g.data is not None else None, g.deleted,
                  g.content_hash, g.origin_store, g.origin_modified_at)
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

    @staticmethod
    def _set_state(conn: psycopg.Connection, entity: str, record_id: str, store: str, version: int,
                   digest: str, store_record_id: str | None) -> None:
        conn.execute(
            """insert into sync.record_state (entity, record_id, store, store_record_id, seen_version, seen_hash)
               values (%s, %s, %s, %s, %s, %s)
               on conflict (entity, record_id, store) do update set seen_version = excluded.seen_version,
                 seen_hash = excluded.seen_hash,
                 store_record_id = coalesce(excluded.store_record_id, sync.record_state.store_record_id),
                 updated_at = now()""", (entity, record_id, store, store_record_id, version, digest))

    # -- publish -----------------------------------------------------------------------------------

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
            return [_golden(r) for r in rows]

    def mark_seen(self, store: str, records: Sequence[GoldenRecord], store_ids: dict[str, str] | None = None,
                  run_id: str | None = None) -> None:
        """Record that the store now holds these versions (and under which id, if it has its own)."""
        store_ids = store_ids or {}
        with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                """insert into sync.record_state (entity, record_id, store, store_record_id, seen_version,
                                                  seen_hash, written_version)
                   values (%s, %s, %s, %s, %s, %s, %s)
                   on conflict (entity, record_id, store) do update
                     set seen_version = greatest(sync.record_state.seen_version, excluded.seen_version),
                         written_version = greatest(sync.record_state.written_version, excluded.written_version),
                         seen_hash = excluded.seen_hash,
                         store_record_id = coalesce(excluded.store_record_id, sync.record_state.store_record_id),
                         updated_at = now()""",
                [(g.entity, g.record_id, store, store_ids.get(g.record_id), g.version, g.content_hash, g.version)
                 for g in records])
            self._outcomes(conn, [(run_id, store, g.entity, g.record_id, None, "publish",
                                   "deleted" if g.deleted else "applied", g.version, None) for g in records])

    def sync_log_since(self, cursor: dict[str, Any] | None, limit: int = 100_000) -> tuple[
            list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        """Runs of the last week, and the outcome and conflict rows after the cursor, for the warehouse."""
        cursor = cursor or {"outcome_id": 0, "conflict_id": 0}
        with self.connect() as conn:
            runs = conn.execute(
                """select run_id, started_at, finished_at, status, trigger, counts::text as counts from sync.runs
                   where started_at > now() - interval '7 days' order by started_at""").fetchall()
            outcomes = conn.execute(
                """select id as outcome_id, run_id, store, entity, record_id, stage, outcome, version, detail, at
                   from sync.record_outcomes where id > %s order by id limit %s""",
                (cursor["outcome_id"], limit)).fetchall()
            conflicts = conn.execute(
                """select id, entity, record_id::text as record_id, detected_at, run_id, winner_store,
                          incoming_store as loser_store, resolution, result_version as winning_version,
                          differing_fields, golden_side::text as golden_side, incoming_side::text as incoming_side
                   from sync.conflicts where id > %s order by id limit %s""",
                (cursor["conflict_id"], limit)).fetchall()
        return runs, outcomes, conflicts, {
            "outcome_id": outcomes[-1]["outcome_id"] if outcomes else cursor["outcome_id"],
            "conflict_id": conflicts[-1]["id"] if conflicts else cursor["conflict_id"]}

    def set_cursor(self, store: str, entity: str, position: dict[str, Any]) -> None:
        with self.connect() as conn:
            conn.execute(
                """insert into sync.cursors (store, entity, position) values (%s, %s, %s)
                   on conflict (store, entity) do update set position = excluded.position, updated_at = now()""",
                (store, entity, Jsonb(position)))

    # -- reads for checks and reconciliation -------------------------------------------------------

    def golden_snapshot(self, entity: str) -> dict[str, tuple[int, dict[str, Any] | None]]:
        """Record id -> (version, data or None when deleted) of every golden record."""
        with self.connect() as conn:
            rows = conn.execute("select record_id, version, data, deleted from sync.golden where entity = %s",
                                (entity,)).fetchall()
            return {str(r["record_id"]): (r["version"], None if r["deleted"] else r["data"]) for r in rows}

    def webhook_backlog(self, store: str, entity: str) -> dict[str, Any]:
        with self.connect() as conn:
            return conn.execute(
                """select count(*) as pending_hints,
                          coalesce(extract(epoch from now() - min(received_at)), 0)::float as oldest_hint_seconds
                   from sync.inbox where store = %s and entity = %s and kind = 'webhook' and applied_at is null""",
                (store, entity)).fetchone()

    def open_quarantine(self, store: str, entity: str) -> int:
        with self.connect() as conn:
            return conn.execute("""select count(*) as n from sync.quarantine
                                   where store = %s and entity = %s and resolved_at is null""",
                                (store, entity)).fetchone()["n"]

    def quarantine_summary(self, entity: str) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(
                """select store, count(*) as records, max(reason) as example_reason from sync.quarantine
                   where entity = %s and resolved_at is null group by store order by store""", (entity,)).fetchall()

    def events_recorded_twice(self, entity: str) -> list[dict[str, Any]]:
        """Ledger vs outcomes: an event key the ledger let through once must have one resolve outcome."""
        with self.connect() as conn:
            return conn.execute(
                """select o.store, o.event_key, count(*) as outcomes from sync.record_outcomes o
                   join sync.processed_events p on p.store = o.store and p.event_key = o.event_key
                   where o.entity = %s and o.stage = 'resolve' and o.outcome <> 'duplicate'
                   group by o.store, o.event_key having count(*) > 1 order by o.store, o.event_key limit 100""",
                (entity,)).fetchall()

    def changes_applied_twice(self, entity: str) -> list[dict[str, Any]]:
        """One source change (same store, modification time and content) that made more than one golden
        version: applied twice, whatever event keys it came under. Independent of the ledger."""
        with self.connect() as conn:
            return conn.execute(
                """select record_id::text as record_id, origin_store, origin_modified_at::text as modified_at,
                          array_agg(version order by version) as versions
                   from sync.golden_history where entity = %s and origin_store <> all(%s)
                   group by record_id, origin_store, origin_modified_at, content_hash having count(*) > 1
                   order by record_id limit 100""", (entity, [MERGED_ORIGIN, REASSERTED_ORIGIN])).fetchall()

    def broken_conflicts(self, entity: str) -> list[dict[str, Any]]:
        """Conflicts whose recorded result the hub never held, or whose winner's content it did not take."""
        with self.connect() as conn:
            return conn.execute(
                """select c.id, c.record_id::text as record_id, c.resolution, c.result_version,
                          g.version as golden_version
                   from sync.conflicts c
                   left join sync.golden g on g.entity = c.entity and g.record_id = c.record_id
                   left join sync.golden_history h
                     on h.entity = c.entity and h.record_id = c.record_id and h.version = c.result_version
                   where c.entity = %s and (
                     g.version is null or h.version is null or g.version < c.result_version
                     -- a tombstone's data is SQL NULL, a conflict side's is JSON null
                     or (c.resolution = 'incoming_wins'
                         and coalesce(h.data, 'null'::jsonb) is distinct from c.incoming_side->'data')
                     or (c.resolution = 'golden_wins'
                         and coalesce(h.data, 'null'::jsonb) is distinct from c.golden_side->'data')
                     or (c.resolution = 'merged' and h.origin_store <> 'merged'))
                   order by c.id limit 100""", (entity,)).fetchall()

    def _recent_runs(self, conn: psycopg.Connection, limit: int) -> list[str]:
        return [r["run_id"] for r in conn.execute(
            "select run_id from sync.runs order by started_at desc limit %s", (limit,)).fetchall()]

    def conflict_rate(self, entity: str, runs: int) -> dict[str, int]:
        with self.connect() as conn:
            return conn.execute(
                """select count(*) filter (where outcome = 'conflict') as conflicts,
                          count(*) filter (where outcome in ('applied', 'conflict')) as resolved
                   from sync.record_outcomes
                   where entity = %s and stage = 'resolve' and run_id = any(%s)""",
                (entity, self._recent_runs(conn, runs))).fetchone()

    def error_summary(self, store: str, entity: str, stale_minutes: float) -> dict[str, Any]:
        with self.connect() as conn:
            summary = conn.execute(
                """select count(*) filter (where resolved_at is null) as unresolved,
                          count(*) filter (where resolved_at is null
                                           and occurred_at < now() - make_interval(mins => %s)) as stale_unresolved
                   from sync.errors where store = %s and entity = %s""",
                (int(stale_minutes), store, entity)).fetchone()
            step = f"publish:{store}:{entity}"
            latest = conn.execute(
                """select coalesce((counts->%s->>'errors')::int, 0) as errors,
                          coalesce((counts->%s->>'read')::int, 0) as attempted
                   from sync.runs where counts ? %s order by started_at desc limit 1""",
                (step, step, step)).fetchone() or {"errors": 0, "attempted": 0}
        return {**summary, "latest_run_errors": latest["errors"], "latest_run_attempted": latest["attempted"]}

    def api_usage(self, store: str, runs: int) -> dict[str, Any]:
        """Requests, 429s and seconds throttled over the recent runs. A run's client is shared by its steps,
        so its counters are cumulative: each run counts its largest figure."""
        with self.connect() as conn:
            recent = self._recent_runs(conn, runs)
            usage = conn.execute(
                """with per_run as (
                     select r.run_id,
                            max(coalesce((s.value->>'requests')::int, 0)) as requests,
                            max(coalesce((s.value->>'rate_limited_responses')::int, 0)) as rate_limited,
                            max(coalesce((s.value->>'seconds_throttled')::float, 0)) as throttled
                     from sync.runs r, jsonb_each(r.counts) s
                     where r.run_id = any(%s) and s.key like %s group by r.run_id)
                   select coalesce(sum(requests), 0)::int as requests,
                          coalesce(sum(rate_limited), 0)::int as rate_limited_responses,
                          coalesce(sum(throttled), 0)::float as seconds_throttled
                   from per_run""", (recent, f"%:{store}:%")).fetchone()
            failures = conn.execute(
                """select count(*) as n from sync.errors where store = %s and run_id = any(%s)
                     and error_class in ('TwentyRateLimited')""", (store, recent)).fetchone()["n"]
        return {**usage, "rate_limit_failures": failures, "runs": len(recent)}

    def held_by(self, store: str, entity: str) -> dict[str, datetime]:
        """Records the store has held (we wrote them there, or they came from there), with when it last did."""
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
                current = _golden(row)
                self._write_golden(conn, GoldenRecord(
                    entity=current.entity, record_id=current.record_id, version=current.version + 1,
                    data=current.data, deleted=current.deleted, content_hash=current.content_hash,
                    origin_store=REASSERTED_ORIGIN, origin_modified_at=current.origin_modified_at), run_id)
            return len(rows)



class HubIdMap:
    """Canonical ids <-> one store's own ids, as the hub's record state knows them. Usually the same id:
    records we create in a store carry their canonical id. They differ where a store's record was linked
    to one the hub already had under another id (same e-mail or domain)."""

    def __init__(self, hub: Hub, store: str) -> None:
        self._hub = hub
        self._store = store

    def to_store(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        return self._hub.store_ids_for(self._store, entity, record_ids)

    def to_canonical(self, entity: str, store_ids: Sequence[str]) -> dict[str, str]:
        return self._hub.record_ids_for(self._store, entity, store_ids)

    def live(self, entity: str, record_ids: Sequence[str]) -> set[str]:
        with self._hub.connect() as conn:
            rows = conn.execute("""select record_id from sync.golden where entity = %s and not deleted
                                   and record_id = any(%s::uuid[])""", (entity, list(record_ids)))
            return {str(r["record_id"]) for r in rows}
