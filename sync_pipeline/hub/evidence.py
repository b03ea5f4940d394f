"""Read-only evidence for the safety checks and the dashboard: conflicts, errors, backlogs, quarantine, and
the cross-checks that a change was applied once and every conflict's result is what the hub holds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sync_pipeline.engine.policy import REASSERTED_ORIGIN
from sync_pipeline.engine.resolver import MERGED_ORIGIN
from sync_pipeline.hub.connection import Conn, HubConnection, one


def _recent_runs(conn: Conn, limit: int) -> list[str]:
    return [r["run_id"] for r in conn.execute(
        "select run_id from sync.runs order by started_at desc limit %s", (limit,)).fetchall()]


# Record ids resolved by some runs (their resolve outcomes, found through the outcomes' run index): the records
# a window of runs touched. A resolve outcome names the canonical id; the pattern keeps out anything else.
_RESOLVED_IN_RUNS = """select distinct record_id::uuid from sync.record_outcomes
                       where run_id = any(%b::text[]) and entity = %s and stage = 'resolve'
                         and record_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"""
_PUBLISHED_IN_RUNS = """select distinct record_id::uuid from sync.record_outcomes
                        where run_id = any(%b::text[]) and entity = %s and stage = 'publish' and store = %s
                          and record_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"""


class Evidence(HubConnection):
    """Queries that only read, each answering one safety check."""

    def recent_conflicts(self, entity: str, limit: int = 10) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(
                """select id, detected_at, record_id, incoming_store, golden_store, winner_store, resolution,
                          differing_fields, golden_side, incoming_side
                   from sync.conflicts where entity = %s order by id desc limit %s""",
                (entity, limit)).fetchall()

    def open_quarantine_rows(self, store: str, entity: str, limit: int = 20) -> list[dict[str, Any]]:
        """Records waiting in quarantine for a fix at their source, newest first, with their reasons."""
        with self.connect() as conn:
            return conn.execute(
                """select record_id, reason, quarantined_at from sync.quarantine
                   where store = %s and entity = %s and resolved_at is null
                   order by quarantined_at desc limit %s""", (store, entity, limit)).fetchall()

    def duplicate_deliveries(self, store: str, entity: str, hours: int = 24) -> int:
        """Webhook deliveries received again (and ignored) over the last hours."""
        with self.connect() as conn:
            return int(one(conn.execute(
                """select count(*) as n from sync.record_outcomes
                   where stage = 'capture' and outcome = 'duplicate' and store = %s and entity = %s
                     and at > now() - make_interval(hours => %s)""", (store, entity, hours)))["n"])

    def run_errors(self, run_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """Failures recorded by one run, with their full (redacted) messages, for its verdict."""
        with self.connect() as conn:
            return conn.execute(
                """select id, store, entity, record_id, operation, error_class, message from sync.errors
                   where run_id = %s order by id limit %s""", (run_id, limit)).fetchall()

    def recent_errors(self, store: str, entity: str, limit: int = 10) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(
                """select id, occurred_at, record_id, operation, error_class, message from sync.errors
                   where store = %s and entity = %s and resolved_at is null order by id desc limit %s""",
                (store, entity, limit)).fetchall()

    def webhook_backlog(self, store: str, entity: str) -> dict[str, Any]:
        with self.connect() as conn:
            return one(conn.execute(
                """select count(*) as pending_hints,
                          coalesce(extract(epoch from now() - min(received_at)), 0)::float
                            as oldest_hint_seconds
                   from sync.inbox
                   where store = %s and entity = %s and kind = 'webhook' and applied_at is null""",
                (store, entity)))

    def open_quarantine(self, store: str, entity: str) -> int:
        with self.connect() as conn:
            count: int = one(conn.execute("""select count(*) as n from sync.quarantine
                                             where store = %s and entity = %s and resolved_at is null""",
                                          (store, entity)))["n"]
            return count

    def open_quarantine_ids(self, store: str, entity: str) -> set[str]:
        """The store's own ids of its records waiting in quarantine (the ids its rows carry there)."""
        with self.connect() as conn:
            return {r["record_id"] for r in conn.execute(
                """select distinct record_id from sync.quarantine
                   where store = %s and entity = %s and resolved_at is null and record_id is not null""",
                (store, entity)).fetchall()}

    def quarantine_summary(self, entity: str) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(
                """select store, count(*) as records, max(reason) as example_reason from sync.quarantine
                   where entity = %s and resolved_at is null group by store order by store""",
                (entity,)).fetchall()

    def events_recorded_twice(self, entity: str, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Ledger vs outcomes: an event key the ledger let through once must have one resolve outcome. With
        `run_ids`, only the outcomes those runs recorded (a window), else all."""
        with self.connect() as conn:
            return conn.execute(
                """select o.store, o.event_key, count(*) as outcomes from sync.record_outcomes o
                   join sync.processed_events p on p.store = o.store and p.event_key = o.event_key
                   where o.entity = %s and o.stage = 'resolve' and o.outcome <> 'duplicate'
                     and (%b::text[] is null or o.run_id = any(%b::text[]))
                   group by o.store, o.event_key having count(*) > 1
                   order by o.store, o.event_key limit 100""",
                (entity, run_ids, run_ids)).fetchall()

    def changes_applied_twice(self, entity: str, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One source change (same store, modification time and content) that made more than one golden
        version: applied twice, whatever event keys it came under. Independent of the ledger. With `run_ids`,
        only the histories of the records those runs resolved, else every record's."""
        window = "" if run_ids is None else f"and record_id in ({_RESOLVED_IN_RUNS})"
        with self.connect() as conn:
            return conn.execute(
                f"""select record_id::text as record_id, origin_store, origin_modified_at::text as modified_at,
                           array_agg(version order by version) as versions
                    from sync.golden_history where entity = %s and origin_store <> all(%s) {window}
                    group by record_id, origin_store, origin_modified_at, content_hash having count(*) > 1
                    order by record_id limit 100""",
                (entity, [MERGED_ORIGIN, REASSERTED_ORIGIN],
                 *(() if run_ids is None else (list(run_ids), entity)))).fetchall()

    def broken_conflicts(self, entity: str, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Conflicts whose recorded result the hub never held, or whose winner's content it did not take. With
        `run_ids`, only the conflicts those runs recorded, else all."""
        with self.connect() as conn:
            return conn.execute(
                """select c.id, c.record_id::text as record_id, c.resolution, c.result_version,
                          g.version as golden_version
                   from sync.conflicts c
                   left join sync.golden g on g.entity = c.entity and g.record_id = c.record_id
                   left join sync.golden_history h
                     on h.entity = c.entity and h.record_id = c.record_id and h.version = c.result_version
                   where c.entity = %s and (%b::text[] is null or c.run_id = any(%b::text[])) and (
                     g.version is null or h.version is null or g.version < c.result_version
                     -- a tombstone's data is SQL NULL, a conflict side's is JSON null
                     or (c.resolution = 'incoming_wins'
                         and coalesce(h.data, 'null'::jsonb) is distinct from c.incoming_side->'data')
                     or (c.resolution = 'golden_wins'
                         and coalesce(h.data, 'null'::jsonb) is distinct from c.golden_side->'data')
                     or (c.resolution = 'merged' and h.origin_store <> 'merged'))
                   order by c.id limit 100""", (entity, run_ids, run_ids)).fetchall()

    def recent_run_ids(self, limit: int) -> list[str]:
        """The latest runs, newest first (a check's window is these less those it passed over:
        `check_windows`)."""
        with self.connect() as conn:
            return _recent_runs(conn, limit)

    def touched_golden_pages(self, entity: str, run_ids: Sequence[str], page: int = 1000
                             ) -> Iterator[list[tuple[str, dict[str, Any] | None]]]:
        """Pages of (record id, golden data or None when deleted) of the records these runs resolved: read
        through one server-side cursor, so memory holds a page whatever the runs touched."""
        with self.connect() as conn, conn.cursor(name="touched_golden") as cursor:
            cursor.execute(
                f"""select record_id::text as record_id, data, deleted from sync.golden
                    where entity = %s and record_id in ({_RESOLVED_IN_RUNS})""", (entity, list(run_ids), entity))
            while rows := cursor.fetchmany(page):
                yield [(r["record_id"], None if r["deleted"] else r["data"]) for r in rows]

    def published_golden_pages(self, entity: str, run_ids: Sequence[str], store: str, validated_by: str,
                               page: int = 1000) -> Iterator[list[tuple[str, dict[str, Any] | None, bool]]]:
        """Pages of (record id, golden data or None, validated) of the records these runs published to the
        store. `validated`: the golden version was resolved in a run the check `validated_by` (the golden
        contract) has passed over, so it validated this very version (versions only grow, and it read the
        run's records after their resolve); its data is not read again (None, as for a deleted record). A
        version the reconciliation re-sent made no resolve outcome that check reads: it is not validated."""
        with self.connect() as conn, conn.cursor(name="published_golden") as cursor:
            cursor.execute(
                f"""select g.record_id::text as record_id, g.deleted, v.validated is not null as validated,
                           case when v.validated then null else g.data end as data
                    from sync.golden g
                    left join lateral (  -- a join, not a subquery, so that each row looks it up once
                      select true as validated from sync.golden_history h
                      join sync.check_clearances c on c.check_key = %s and c.run_id = h.run_id
                      where h.entity = g.entity and h.record_id = g.record_id and h.version = g.version
                        and h.origin_store <> %s limit 1) v on true
                    where g.entity = %s and g.record_id in ({_PUBLISHED_IN_RUNS})""",
                (validated_by, REASSERTED_ORIGIN, entity, list(run_ids), entity, store))
            while rows := cursor.fetchmany(page):
                yield [(r["record_id"], None if r["deleted"] else r["data"], r["validated"]) for r in rows]

    def held_back_keys(self, entity: str, key: str) -> list[dict[str, Any]]:
        """Open quarantine rows of records held back because another record owns their natural key."""
        with self.connect() as conn:
            return conn.execute(
                """select store, record_id, payload->>%s as value, reason from sync.quarantine
                   where entity = %s and resolved_at is null
                     and failures @> '[{"check": "unique natural key"}]'::jsonb
                   order by store, record_id limit 100""", (key, entity)).fetchall()

    def shared_keys_in_runs(self, entity: str, key: str, run_ids: Sequence[str]) -> tuple[int, list[str]]:
        """How many natural keys the live golden records these runs resolved hold, and those of them that more
        than one live golden record holds: found in the hub, whatever the runs touched."""
        with self.connect() as conn:
            row = one(conn.execute(
                f"""with touched as (
                      select distinct data->>%s as value from sync.golden
                      where entity = %s and not deleted and data->>%s is not null
                        and record_id in ({_RESOLVED_IN_RUNS})),
                    shared as (
                      select g.data->>%s as value from sync.golden g join touched t on g.data->>%s = t.value
                      where g.entity = %s and not g.deleted
                      group by 1 having count(*) > 1 order by 1 limit 100)
                    select (select count(*) from touched) as touched,
                           coalesce((select array_agg(value order by value) from shared), '{{}}') as shared""",
                (key, entity, key, list(run_ids), entity, key, key, entity)))
        return row["touched"], list(row["shared"])

    def undelivered(self, store: str, entity: str, run_ids: Sequence[str]) -> dict[str, Any]:
        """Records these runs resolved or published to the store whose golden version the store has not
        seen: `explained` when an open publish error of the store names them (or its whole step failed),
        `unexplained` otherwise (what a sync would have dropped without a word)."""
        with self.connect() as conn:
            rows = conn.execute(
                f"""with touched as ({_RESOLVED_IN_RUNS} union {_PUBLISHED_IN_RUNS})
                    select t.record_id::text as record_id, exists (
                             select from sync.errors e
                             where e.resolved_at is null and e.store = %s and e.entity = %s
                               and e.operation = 'publish'
                               and (e.record_id = t.record_id::text or t.record_id::text = any(e.record_ids)
                                    or (e.record_id is null and e.record_ids is null))) as explained
                    from touched t
                    join sync.golden g on g.entity = %s and g.record_id = t.record_id
                    left join sync.record_state s on s.entity = g.entity and s.record_id = g.record_id
                                                 and s.store = %s
                    where coalesce(s.seen_version, 0) < g.version
                    order by 1 limit 1000""",
                (list(run_ids), entity, list(run_ids), entity, store, store, entity, entity, store)).fetchall()
        return {"explained": [r["record_id"] for r in rows if r["explained"]],
                "unexplained": [r["record_id"] for r in rows if not r["explained"]]}

    def conflict_rate(self, entity: str, runs: int) -> dict[str, int]:
        with self.connect() as conn:
            return one(conn.execute(
                """select count(*) filter (where outcome = 'conflict') as conflicts,
                          count(*) filter (where outcome in ('applied', 'conflict')) as resolved
                   from sync.record_outcomes
                   where entity = %s and stage = 'resolve' and run_id = any(%b::text[])""",
                (entity, _recent_runs(conn, runs))))

    def error_summary(self, store: str, entity: str, stale_minutes: float) -> dict[str, Any]:
        with self.connect() as conn:
            summary = one(conn.execute(
                """select count(*) filter (where resolved_at is null) as unresolved,
                          count(*) filter (where resolved_at is null
                                             and occurred_at < now() - make_interval(mins => %s))
                            as stale_unresolved
                   from sync.errors where store = %s and entity = %s""",
                (int(stale_minutes), store, entity)))
            step = f"publish:{store}:{entity}"
            latest = conn.execute(
                """select coalesce((counts->%s->>'errors')::int, 0) as errors,
                          coalesce((counts->%s->>'read')::int, 0) as attempted
                   from sync.runs where counts ? %s order by started_at desc limit 1""",
                (step, step, step)).fetchone() or {"errors": 0, "attempted": 0}
        return {**summary, "latest_run_errors": latest["errors"], "latest_run_attempted": latest["attempted"]}

    def api_usage(self, store: str, runs: int, rate_limited_errors: Sequence[str]) -> dict[str, Any]:
        """Requests, 429s and seconds throttled over the recent runs, and the errors of the classes that mean
        the store's rate limit was hit that are still open (one closed because its record later landed is
        no failure). A run's client is shared by its steps, so its counters are cumulative: each run counts
        its largest figure."""
        with self.connect() as conn:
            recent = _recent_runs(conn, runs)
            usage = one(conn.execute(
                """with per_run as (
                     select r.run_id,
                            max(coalesce((s.value->>'requests')::int, 0)) as requests,
                            max(coalesce((s.value->>'rate_limited_responses')::int, 0)) as rate_limited,
                            max(coalesce((s.value->>'seconds_throttled')::float, 0)) as throttled
                     from sync.runs r, jsonb_each(r.counts) s
                     where r.run_id = any(%b::text[]) and s.key like %s group by r.run_id)
                   select coalesce(sum(requests), 0)::int as requests,
                          coalesce(sum(rate_limited), 0)::int as rate_limited_responses,
                          coalesce(sum(throttled), 0)::float as seconds_throttled
                   from per_run""", (recent, f"%:{store}:%")))
            failures = one(conn.execute(
                """select count(*) as n from sync.errors where store = %s and run_id = any(%b::text[])
                     and error_class = any(%b::text[]) and resolved_at is null""",
                (store, recent, list(rate_limited_errors))))["n"]
        return {**usage, "rate_limit_failures": failures, "runs": len(recent)}
