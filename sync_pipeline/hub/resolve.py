"""The resolve loop: the inbox applied to the golden records, one change at a time, each batch in one
transaction with everything it records (ledger, conflicts, record state, outcomes). The rules that decide
what a change means live in the engine; this module reads what they need and writes what they decide."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from sync_pipeline.engine.policy import claimed_base, held_after, is_echo, overwritten, own_base
from sync_pipeline.engine.records import Change, Op, QuarantinedRecord, ResolveStats
from sync_pipeline.engine.resolver import Conflict, Outcome, Resolution, resolve
from sync_pipeline.hub.connection import Conn, HubConnection
from sync_pipeline.hub.golden import golden_from_row, set_state, store_state, write_golden
from sync_pipeline.hub.id_maps import record_ids, store_ids
from sync_pipeline.hub.inbox import quarantine
from sync_pipeline.hub.runs import RecordOutcome, record_outcomes
from sync_pipeline.model.entities import Entity

_COUNTERS = {Outcome.APPLIED: "applied", Outcome.ECHO: "echoes", Outcome.CONFLICT: "conflicts",
             Outcome.NOOP: "noops"}


def _claim(conn: Conn, store: str, event_key: str, run_id: str | None) -> bool:
    """Enter the event in the processed-event ledger; False if it was there already (a replay)."""
    return conn.execute(
        """insert into sync.processed_events (store, event_key, run_id) values (%s, %s, %s)
           on conflict do nothing returning event_key""", (store, event_key, run_id)).fetchone() is not None


def _natural_key_owner(conn: Conn, entity: Entity, value: Any, record_id: str | None) -> str | None:
    """Another live record that already has this natural key value."""
    if value is None:
        return None
    row = conn.execute(
        """select record_id from sync.golden
            where entity = %s and not deleted and data->>%s = %s
              and (%s::uuid is null or record_id <> %s::uuid) limit 1""",
        (entity.name, entity.natural_key, str(value), record_id, record_id)).fetchone()
    return str(row["record_id"]) if row else None


def _identify(conn: Conn, entity: Entity, row: DictRow) -> tuple[str, str | None]:
    """The canonical id of the changed record, and the other record that already owns its natural key if
    the change cannot take it. A record the hub does not know yet, with the natural key of one it does, is
    that record under another id: the two are linked."""
    store, store_record_id = row["store"], row["store_record_id"]
    record_id = (str(row["record_id"]) if row["record_id"]
                 else record_ids(conn, store, entity.name, [store_record_id]).get(store_record_id))
    if Op(row["op"]) is Op.UPSERT and entity.natural_key:
        owner = _natural_key_owner(conn, entity, row["data"].get(entity.natural_key), record_id)
        if owner:
            linked = store_ids(conn, store, entity.name, [owner]).get(owner)
            if record_id is None and linked in (None, store_record_id):
                return owner, None
            return record_id or store_record_id, owner
    return record_id or store_record_id, None  # a record new to the hub keeps the store's id


def _later_origins(conn: Conn, entity: str, record_id: str, version: int) -> list[tuple[int, str]]:
    rows = conn.execute(
        """select version, origin_store from sync.golden_history
           where entity = %s and record_id = %s and version > %s order by version""",
        (entity, record_id, version)).fetchall()
    return [(r["version"], r["origin_store"]) for r in rows]


def _snapshot(conn: Conn, entity: str, record_id: str, version: int) -> dict[str, Any] | None:
    """The golden data at a past version, while the history has it (None for a tombstone)."""
    row = conn.execute(
        "select data from sync.golden_history where entity = %s and record_id = %s and version = %s",
        (entity, record_id, version)).fetchone()
    data: dict[str, Any] | None = row["data"] if row else None
    return data


def _record_conflict(conn: Conn, run_id: str | None, c: Conflict, result_version: int) -> None:
    conn.execute(
        """insert into sync.conflicts (run_id, entity, record_id, golden_version, base_version,
             incoming_store, golden_store, winner_store, resolution, result_version,
             differing_fields, golden_side, incoming_side)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (run_id, c.entity, c.record_id, c.golden_version, c.base_version, c.incoming_store,
         c.golden_store, c.winner_store, c.resolution, result_version,
         c.differing_fields, Jsonb(c.golden_side), Jsonb(c.incoming_side)))


def _quarantine_taken_key(conn: Conn, entity: Entity, row: DictRow, owner: str, run_id: str | None) -> None:
    reason = f"{entity.natural_key} {row['data'].get(entity.natural_key)!r} already belongs to record {owner}"
    failures = [{"check": "unique natural key", "column": entity.natural_key}]
    record = QuarantinedRecord(row["store_record_id"], row["event_key"], reason, failures, row["data"])
    quarantine(conn, row["store"], entity.name, [record], run_id, stage="resolve")


def _resolve_change(conn: Conn, entity: Entity, row: DictRow, record_id: str, run_id: str | None,
                    priority: Sequence[str]) -> tuple[Resolution, int | None]:
    """Resolve one change against its golden record and write what follows: the new golden version, the
    conflict, what the store now holds. Returns the resolution and the golden version after it."""
    store = row["store"]
    current_row = conn.execute("select * from sync.golden where entity = %s and record_id = %s for update",
                               (entity.name, record_id)).fetchone()
    current = golden_from_row(current_row) if current_row else None
    state = store_state(conn, entity.name, record_id, store)
    row_version: int | None = row["base_version"]
    base_version = claimed_base(row_version, state)
    if current and base_version < current.version:
        later = _later_origins(conn, entity.name, record_id, base_version)
        base_version = own_base(base_version, store, later)
    change = Change(store=store, entity=entity.name, record_id=record_id, op=Op(row["op"]), data=row["data"],
                    base_version=base_version, modified_at=row["modified_at"], event_key=row["event_key"],
                    store_record_id=row["store_record_id"])
    if is_echo(current, change, row_version, state):
        resolution = Resolution(Outcome.ECHO, None)
    else:
        base = (_snapshot(conn, entity.name, record_id, base_version)
                if current and base_version and base_version < current.version else None)
        resolution = resolve(current, change, base, priority)
    result = resolution.golden
    if result is not None:
        write_golden(conn, result, run_id)
    if resolution.conflict is not None:
        _record_conflict(conn, run_id, resolution.conflict,
                         result.version if result else resolution.conflict.golden_version)
    if resolution.outcome is not Outcome.NOOP:
        version, digest = held_after(resolution, change, current, state, overwritten(row_version, state))
        set_state(conn, entity.name, record_id, store, version, digest, row["store_record_id"])
    final = result or current
    return resolution, final.version if final else None


def _resolve_one(conn: Conn, entity: Entity, row: DictRow, run_id: str | None, priority: Sequence[str],
                 stats: ResolveStats) -> None:
    """Once per event (the ledger), then once per record identity (natural keys stay unique)."""
    store, event_key = row["store"], row["event_key"]
    stats.read += 1
    if not _claim(conn, store, event_key, run_id):
        stats.duplicates += 1
        known_id = row["record_id"] and str(row["record_id"])
        record_outcomes(conn, [RecordOutcome(run_id, store, entity.name, known_id, "resolve", "duplicate",
                                             event_key=event_key)])
        return
    record_id, key_owner = _identify(conn, entity, row)
    if key_owner:
        stats.quarantined += 1
        _quarantine_taken_key(conn, entity, row, key_owner, run_id)
        return
    resolution, version = _resolve_change(conn, entity, row, record_id, run_id, priority)
    counter = _COUNTERS[resolution.outcome]
    setattr(stats, counter, getattr(stats, counter) + 1)
    record_outcomes(conn, [RecordOutcome(
        run_id, store, entity.name, record_id, "resolve", resolution.outcome.value, event_key=event_key,
        version=version, detail=resolution.conflict.resolution if resolution.conflict else None)])


class Resolver(HubConnection):
    """Resolves the inbox into the golden records."""

    def resolve_pending(self, entity: Entity, run_id: str | None, priority: Sequence[str],
                        batch_size: int) -> ResolveStats:
        """Apply the inbox to the golden records, batch by batch, each batch in one transaction."""
        stats = ResolveStats()
        while True:
            with self.connect() as conn, conn.transaction():
                rows = conn.execute(
                    """select * from sync.inbox where entity = %s and kind = 'change' and applied_at is null
                       order by id limit %s for update skip locked""", (entity.name, batch_size)).fetchall()
                for row in rows:
                    _resolve_one(conn, entity, row, run_id, priority, stats)
                    conn.execute("update sync.inbox set applied_at = now() where id = %s", (row["id"],))
            if len(rows) < batch_size:
                return stats
