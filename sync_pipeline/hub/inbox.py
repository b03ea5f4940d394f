"""The inbox of captured changes and webhook hints, quarantine for records that fail their contract, and
the capture cursors. A capture's changes, quarantined records and cursor are written in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sync_pipeline.engine.records import CapturedChange, Op, QuarantinedRecord
from sync_pipeline.hub.connection import (
    JSON_DUMPS,
    Conn,
    HubConnection,
    copy_new_rows,
    json_rows,
    jsonb_or_null,
    one,
)
from sync_pipeline.hub.runs import RecordOutcome, record_outcomes
from sync_pipeline.redaction import redact, redact_text


_NUL = "\x00"
_NUL_SHOWN = "\\u0000"  # six visible characters: Postgres text and jsonb cannot hold the NUL itself
_NUL_NOTE = " (NUL characters shown as \\u0000)"


def _nul_free(value: Any) -> Any:
    """A redacted payload with every NUL character written out visibly."""
    if isinstance(value, dict):
        return {_nul_free(k): _nul_free(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nul_free(v) for v in value]
    if isinstance(value, str):
        return value.replace(_NUL, _NUL_SHOWN)
    return value


def _storable(q: QuarantinedRecord) -> QuarantinedRecord:
    """The quarantined record as the hub can store it: redacted, and NULs shown (and said so in the reason)."""
    failures, payload = redact(q.failures), redact(q.payload)
    clean_failures, clean_payload = _nul_free(failures), _nul_free(payload)
    reason = q.reason.replace(_NUL, _NUL_SHOWN)
    if (clean_failures, clean_payload, reason) != (failures, payload, q.reason):
        reason += _NUL_NOTE
    return QuarantinedRecord(q.store_record_id, q.event_key, reason, clean_failures, clean_payload)


def quarantine(conn: Conn, store: str, entity: str, quarantined: Sequence[QuarantinedRecord],
               run_id: str | None, stage: str = "capture") -> None:
    """Keep invalid records out of the hub, redacted: one open row per record, however often it is seen."""
    quarantined = [_storable(q) for q in quarantined]
    with conn.cursor() as cur:
        cur.executemany(
            # One open row per record: a new sighting updates it (a replayed event is not counted again).
            """with v (run_id, store, entity, record_id, event_key, reason, failures, payload) as (
                 values (%s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::jsonb, %s::jsonb)),
               seen as (
                 update sync.quarantine q set reason = v.reason, failures = v.failures, payload = v.payload,
                   last_seen_at = now(), times_seen = q.times_seen + (q.event_key <> v.event_key)::int
                 from v where q.store = v.store and q.entity = v.entity and q.record_id = v.record_id
                   and q.resolved_at is null
                 returning q.id)
               insert into sync.quarantine (run_id, store, entity, record_id, event_key, reason, failures,
                                            payload)
               select * from v where not exists (select from seen) on conflict do nothing""",
            [(run_id, store, entity, q.store_record_id, q.event_key, q.reason, Jsonb(q.failures),
              Jsonb(q.payload)) for q in quarantined])
    record_outcomes(conn, [RecordOutcome(run_id, store, entity, q.store_record_id, stage, "quarantined",
                                         event_key=q.event_key, detail=q.reason[:500]) for q in quarantined])


_CHANGE_COLUMNS = ("store", "entity", "event_key", "kind", "record_id", "store_record_id", "op", "data",
                   "base_version", "modified_at", "run_id")


def _insert_changes(conn: Conn, store: str, entity: str, changes: Sequence[CapturedChange],
                    run_id: str | None) -> int:
    """The changes in one statement; returns how many were new (a change already in the inbox, by its
    store and event key, is ignored). A page of new changes (a first capture's, most pages of a change log)
    goes in by COPY; one holding a change seen before fails the COPY's savepoint and is inserted instead,
    skipping that change."""
    if not changes:
        return 0
    if copy_new_rows(conn, "inbox", _CHANGE_COLUMNS, [
            (store, entity, c.event_key, "change", c.record_id, c.store_record_id, c.op.value,
             None if c.data is None else Jsonb(c.data, dumps=JSON_DUMPS), c.base_version, c.modified_at, run_id)
            for c in changes]):
        return len(changes)
    return conn.execute(
        """insert into sync.inbox (store, entity, event_key, kind, record_id, store_record_id, op, data,
                                  base_version, modified_at, run_id)
           select %s, %s, event_key, 'change', record_id, store_record_id, op, data, base_version, modified_at, %s
           from jsonb_to_recordset(%s) as c(event_key text, record_id uuid, store_record_id text, op text,
                                            data jsonb, base_version bigint, modified_at timestamptz)
           on conflict (store, event_key) do nothing""",
        (store, entity, run_id, json_rows(vars(c) for c in changes))).rowcount


def _save_cursor(conn: Conn, store: str, entity: str, position: dict[str, Any]) -> None:
    conn.execute(
        """insert into sync.cursors (store, entity, position) values (%s, %s, %s)
           on conflict (store, entity) do update set position = excluded.position, updated_at = now()""",
        (store, entity, Jsonb(position)))


class Inbox(HubConnection):
    """Where captured changes wait to be resolved, and where each store's capture left off."""

    def get_cursor(self, store: str, entity: str) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute("select position from sync.cursors where store = %s and entity = %s",
                               (store, entity)).fetchone()
            position: dict[str, Any] | None = row["position"] if row else None
            return position

    def set_cursor(self, store: str, entity: str, position: dict[str, Any]) -> None:
        with self.connect() as conn:
            _save_cursor(conn, store, entity, position)

    def enqueue(self, store: str, entity: str, changes: Sequence[CapturedChange],
                quarantined: Sequence[QuarantinedRecord], cursor: dict[str, Any] | None,
                run_id: str | None) -> int:
        """Put captured changes in the inbox, invalid ones in quarantine, and advance the cursor,
        all in one transaction. Returns how many changes were new (a replayed change is ignored)."""
        with self.connect() as conn, conn.transaction():
            try:
                with conn.transaction():
                    new = _insert_changes(conn, store, entity, changes, run_id)
            except psycopg.DataError:
                # A value the hub cannot store that its contract let through: that change alone is
                # quarantined, so it neither stops the source nor holds back the others.
                new, refused = 0, []
                for c in changes:
                    try:
                        with conn.transaction():
                            new += _insert_changes(conn, store, entity, [c], run_id)
                    except psycopg.DataError as exc:
                        refused.append(c)
                        quarantined = [*quarantined, QuarantinedRecord(
                            c.store_record_id, c.event_key, "the hub cannot store it: "
                            + redact_text(str(exc).splitlines()[0]), [], {"data": c.data})]
                refused_keys = {r.event_key for r in refused}
                changes = [c for c in changes if c.event_key not in refused_keys]
            quarantine(conn, store, entity, quarantined, run_id)
            # A record that now meets its contract leaves quarantine.
            conn.execute("""update sync.quarantine set resolved_at = now()
                           where store = %s and entity = %s and record_id = any(%b::text[])
                             and resolved_at is null""",
                        (store, entity, [c.store_record_id for c in changes if c.op is Op.UPSERT]))
            if cursor is not None:
                _save_cursor(conn, store, entity, cursor)
            return new

    def enqueue_webhook(self, store: str, entity: str, event_key: str, store_record_id: str | None,
                        payload: dict[str, Any]) -> bool:
        """Store a received webhook as a hint; False if this event was received before (the repeat is recorded
        as a duplicate outcome, and changes nothing else)."""
        with self.connect() as conn, conn.transaction():
            cur = conn.execute(
                """insert into sync.inbox (store, entity, event_key, kind, store_record_id, payload)
                   values (%s, %s, %s, 'webhook', %s, %s) on conflict (store, event_key) do nothing""",
                (store, entity, event_key, store_record_id, Jsonb(payload)))
            if cur.rowcount == 1:
                return True
            record_outcomes(conn, [RecordOutcome(None, store, entity, store_record_id, "capture", "duplicate",
                                                 event_key)])
            return False

    def latest_hint(self) -> int:
        """The id of the newest webhook hint still waiting (0 if none), for the inbox sensor."""
        with self.connect() as conn:
            hint_id: int = one(conn.execute("""select coalesce(max(id), 0) as id from sync.inbox
                                               where kind = 'webhook' and applied_at is null"""))["id"]
            return hint_id

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
            cur.executemany(
                """update sync.inbox set kind = 'change', record_id = %s, op = %s, data = %s,
                     base_version = %s, modified_at = %s, run_id = %s
                   where store = %s and event_key = %s and kind = 'webhook'""",
                [(c.record_id, c.op.value, jsonb_or_null(c.data), c.base_version, c.modified_at, run_id,
                  store, c.event_key) for c in changes])
            cur.executemany("""update sync.inbox set applied_at = now(), run_id = %s
                               where store = %s and event_key = %s and kind = 'webhook'""",
                            [(run_id, store, q.event_key) for q in quarantined])
            quarantine(conn, store, entity, quarantined, run_id)
