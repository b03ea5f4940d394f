"""The run log, the error reporter and the per-record outcomes of every stage."""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb

from sync_pipeline.hub.connection import Conn, HubConnection, as_uuid, copy_rows, one
from sync_pipeline.redaction import redact, redact_text


class RecordOutcome(NamedTuple):
    """What one stage did with one record (or one event), for the sync log."""

    run_id: str | None
    store: str
    entity: str
    record_id: str | None
    stage: str  # capture, resolve, publish or reconcile
    outcome: str
    event_key: str | None = None
    version: int | None = None
    detail: str | None = None


def record_outcomes(conn: Conn, outcomes: Sequence[RecordOutcome]) -> None:
    """Written in the caller's transaction, so an outcome exists exactly when its change does."""
    if outcomes:
        copy_rows(conn, "record_outcomes", RecordOutcome._fields, outcomes)


class RunLog(HubConnection):
    """Runs with their per-step counts, and errors until the step or record goes through."""

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

    def record_error(self, *, store: str, operation: str, error: BaseException, run_id: str | None = None,
                     entity: str | None = None, record_id: str | None = None, attempt: int = 1,
                     payload: Any = None, record_ids: Sequence[str] | None = None) -> int:
        """Record a failure with its context; secrets are removed from the message and the payload. A failure
        of a whole batch names its records in `record_ids` (in full: the payload is an excerpt), so that it
        closes once they have all gone through."""
        message = redact_text(f"{error}")[:4000] or type(error).__name__
        excerpt = redact({"payload": payload, "trace": traceback.format_exception_only(error)[-1:]})
        with self.connect() as conn:
            row = one(conn.execute(
                """insert into sync.errors (run_id, store, entity, record_id, operation, attempt,
                                            error_class, message, payload_excerpt, record_ids)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning id""",
                (run_id, store, entity, record_id, operation, attempt, type(error).__name__, message,
                 Jsonb(excerpt), list(record_ids) if record_ids else None)))
            record_outcomes(conn, [RecordOutcome(run_id, store, entity or "-", record_id, stage=operation,
                                                 outcome="error", detail=message[:500])])
            error_id: int = row["id"]
            return error_id

    def close_step_errors(self, store: str, entity: str, operation: str) -> None:
        """A step that went through closes the errors of earlier failures of that whole step."""
        with self.connect() as conn:
            conn.execute("""update sync.errors set resolved_at = now()
                            where resolved_at is null and record_id is null
                              and store = %s and entity = %s and operation = %s""",
                         (store, entity, operation))

    def close_record_errors(self, store: str, entity: str, record_ids: Sequence[str]) -> None:
        """Records that have since gone through close their earlier errors."""
        if record_ids:
            with self.connect() as conn:
                conn.execute(
                    """update sync.errors set resolved_at = now()
                       where resolved_at is null and store = %s and entity = %s and record_id = any(%b::text[])""",
                    (store, entity, list(record_ids)))

    def close_errors_of_held(self, store: str, entity: str, held: Mapping[str, int]) -> int:
        """Close the store's publish errors of records it was found to hold (record id -> the golden version
        whose content it holds), while the hub still holds that version: a write that landed although its
        request failed is not failing. A batch's error (no record id, its records in `record_ids`) closes
        once the store holds every record it names. Returns how many errors closed."""
        if not held:
            return 0
        with self.connect() as conn:
            closed = conn.execute(
                """with held as (
                     select h.record_id from unnest(%b::text[], %b::bigint[]) as h(record_id, version)
                     join sync.golden g on g.entity = %s and g.record_id = h.record_id::uuid
                                       and g.version = h.version)
                   update sync.errors e set resolved_at = now()
                   where e.resolved_at is null and e.store = %s and e.entity = %s and e.operation = 'publish'
                     and (e.record_id in (select record_id from held)
                          or (e.record_id is null and cardinality(e.record_ids) > 0
                              and e.record_ids <@ array(select record_id from held)))""",
                (list(held), list(held.values()), entity, store, entity))
            return closed.rowcount

    def close_errors_of_synced(self, store: str, entity: str) -> int:
        """Close the store's publish errors of records the hub knows it holds at the golden version: a later
        write went through, or the store sent that very content back (a write that landed although its
        request failed comes back as an echo, and is never retried). Returns how many errors closed."""
        with self.connect() as conn:
            named = {i for r in conn.execute(
                """select record_id, record_ids from sync.errors where resolved_at is null
                     and store = %s and entity = %s and operation = 'publish'""", (store, entity))
                     for i in ([r["record_id"]] if r["record_id"] else r["record_ids"] or [])}
            held = {str(r["record_id"]): r["version"] for r in conn.execute(
                """select g.record_id, g.version from sync.golden g
                   join sync.record_state s
                     on s.entity = g.entity and s.record_id = g.record_id and s.store = %s
                   where g.entity = %s and g.record_id = any(%b::uuid[])
                     and s.seen_version >= g.version and s.seen_hash = g.content_hash""",
                (store, entity, [i for i in named if as_uuid(i) is not None]))}
        return self.close_errors_of_held(store, entity, held)
