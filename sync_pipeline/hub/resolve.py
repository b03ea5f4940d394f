"""The resolve loop: the inbox applied to the golden records a batch at a time, each batch in one transaction
with everything it records (ledger, conflicts, record state, outcomes). A batch costs a constant number of
statements: what its records need is read at once, the engine decides every change in memory
(`engine.batch`), and each table is written with one statement."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from sync_pipeline.engine.batch import (
    QUARANTINED,
    BatchResolution,
    Decided,
    HubView,
    InboxChange,
    Reach,
    canonical_id,
    changes_reach,
    key_text,
    history_floor,
    resolve_batch,
    view_reach,
)
from sync_pipeline.engine.records import Op, ResolveStats
from sync_pipeline.hub.connection import Conn, HubConnection, copy_rows
from sync_pipeline.hub.golden import golden_from_row, set_states, store_states, write_golden
from sync_pipeline.hub.inbox import quarantine
from sync_pipeline.hub.runs import RecordOutcome, record_outcomes
from sync_pipeline.model.entities import Entity
from sync_pipeline.overlap import WriteBehind
from sync_pipeline.postgres_statistics import analyze_grown

# Every this many rows a resolve writes, the hub's tables that grew past their last analysis are analyzed
# (`postgres_statistics`): after a bulk load the planner would otherwise plan for the near-empty tables.
ANALYZE_AFTER_ROWS = 5_000
_ANALYZED = ("golden", "golden_history", "record_state", "publish_pending", "processed_events", "record_outcomes")
_CONFLICT_COLUMNS = ("run_id", "entity", "record_id", "golden_version", "base_version", "incoming_store",
                     "golden_store", "winner_store", "resolution", "result_version", "differing_fields",
                     "golden_side", "incoming_side")


def _pending(conn: Conn, entity: Entity, batch_size: int) -> list[InboxChange]:
    rows = conn.execute(
        """select id, store, event_key, record_id, store_record_id, op, data, base_version, modified_at
           from sync.inbox where entity = %s and kind = 'change' and applied_at is null
           order by id limit %s for update skip locked""", (entity.name, batch_size)).fetchall()
    return [InboxChange(r["id"], r["store"], r["event_key"], str(r["record_id"]) if r["record_id"] else None,
                        r["store_record_id"], Op(r["op"]), r["data"], r["base_version"], r["modified_at"])
            for r in rows]


def _claim(conn: Conn, changes: Sequence[InboxChange], run_id: str | None) -> set[tuple[str, str]]:
    """Enter the events in the processed-event ledger; those already there (replays) are not returned."""
    rows = conn.execute(
        """insert into sync.processed_events (store, event_key, run_id)
           select store, event_key, %s from unnest(%b::text[], %b::text[]) as e(store, event_key)
           on conflict do nothing returning store, event_key""",
        (run_id, [c.store for c in changes], [c.event_key for c in changes])).fetchall()
    return {(r["store"], r["event_key"]) for r in rows}


MAPPED_IDS = """select s.record_id from sync.record_state s
                join unnest(%b::text[], %b::text[]) as u(store, store_record_id)
                  on s.store = u.store and s.store_record_id = u.store_record_id
                where s.entity = %s and s.store_record_id <> s.record_id::text"""


def _mapped_ids(conn: Conn, entity: str, changes: Sequence[InboxChange]) -> set[str]:
    """The canonical ids of the records the batch's stores know under ids of their own (one held under its
    canonical id is a candidate already: `canonical_id` of its store id), from the index of those alone."""
    unknown = [c for c in changes if c.record_id is None and c.store_record_id is not None]
    if not unknown:
        return set()
    rows = conn.execute(MAPPED_IDS, ([c.store for c in unknown], [c.store_record_id for c in unknown],
                                     entity)).fetchall()
    return {str(r["record_id"]) for r in rows}


def _key_owners(conn: Conn, entity: Entity, changes: Sequence[InboxChange]) -> dict[str, set[str]]:
    """Natural key value -> the live records holding it, for the values the batch carries."""
    if not entity.natural_key:
        return {}
    values = sorted({key_text(c.data[entity.natural_key]) for c in changes
                     if c.op is Op.UPSERT and c.data and c.data.get(entity.natural_key) is not None})
    if not values:
        return {}
    # Literals, so the planner matches the partial expression index on the key (migration 2).
    key = sql.SQL("data->>{}").format(sql.Literal(entity.natural_key))
    rows = conn.execute(sql.SQL(
        """select record_id, {key} as value from sync.golden
           where entity = {entity} and not deleted and {key} = any(%b::text[])""").format(
        key=key, entity=sql.Literal(entity.name)), (values,)).fetchall()
    owners: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        owners[r["value"]].add(str(r["record_id"]))
    return owners


def _read_view(conn: Conn, entity: Entity, changes: Sequence[InboxChange]) -> HubView:
    """What the hub holds of every record the batch may touch, its golden rows locked."""
    owners = _key_owners(conn, entity, changes)
    candidates = ({c.record_id for c in changes if c.record_id}
                  | {canonical_id(c.store_record_id, c.store) for c in changes if c.store_record_id}
                  | _mapped_ids(conn, entity.name, changes)
                  | {rid for ids in owners.values() for rid in ids})
    ids = sorted(candidates)
    golden = {str(r["record_id"]): golden_from_row(r) for r in conn.execute(
        """select * from sync.golden where entity = %s and record_id = any(%b::uuid[])
           order by record_id for update""", (entity.name, ids))}
    view = HubView(entity.natural_key, golden=golden, states=store_states(conn, entity.name, ids),
                   key_owners=dict(owners))
    # The history from the oldest base a change may claim (else from the current version, which a second
    # change of the same record in this batch may have as its base).
    floors = {rid: g.version for rid, g in golden.items()}
    for c in changes:
        key = (c.data or {}).get(entity.natural_key) if entity.natural_key else None
        new_id = canonical_id(c.store_record_id, c.store) if c.store_record_id else None
        maybe = {c.record_id, view.record_id_of(c.store, c.store_record_id), new_id,
                 *(owners.get(key_text(key), ()) if key is not None else ())}
        for rid in maybe & floors.keys():
            floors[rid] = min(floors[rid], history_floor(c, rid, view))
    if floors:
        rows = conn.execute(
            """select h.record_id, h.version, h.origin_store, h.data from sync.golden_history h
               join unnest(%b::uuid[], %b::bigint[]) as f(record_id, floor)
                 on h.record_id = f.record_id and h.version >= f.floor
               where h.entity = %s""", (list(floors), list(floors.values()), entity.name)).fetchall()
        for r in rows:
            view.history.setdefault(str(r["record_id"]), {})[r["version"]] = (r["origin_store"], r["data"])
    return view


def _outcome(run_id: str | None, entity: str, d: Decided) -> RecordOutcome:
    return RecordOutcome(run_id, d.change.store, entity, d.record_id, "resolve", d.outcome,
                         event_key=d.change.event_key, version=d.version, detail=d.detail)


def _write(conn: Conn, entity: Entity, changes: Sequence[InboxChange], done: BatchResolution, held: _Held,
           run_id: str | None) -> None:
    """What the batch decided, one statement per table (what the hub did not hold by COPY). The stores'
    states go first: a new version is then marked pending only for the stores that do not hold it (not, and
    at once unmarked, for its source)."""
    set_states(conn, entity.name, done.states, new=done.states.keys() - held.states)
    write_golden(conn, done.versions, run_id, new={g.record_id for g in done.versions} - held.golden)
    copy_rows(conn, "conflicts", _CONFLICT_COLUMNS, (
        (run_id, c.entity, c.record_id, c.golden_version, c.base_version, c.incoming_store, c.golden_store,
         c.winner_store, c.resolution, result_version, c.differing_fields, Jsonb(c.golden_side),
         Jsonb(c.incoming_side)) for c, result_version in done.conflicts))
    quarantined: dict[str, list[Any]] = defaultdict(list)
    for d in done.decided:
        if d.outcome == QUARANTINED and d.quarantined is not None:
            quarantined[d.change.store].append(d.quarantined)
    for store, records in quarantined.items():
        quarantine(conn, store, entity.name, records, run_id, stage="resolve")
    record_outcomes(conn, [_outcome(run_id, entity.name, d) for d in done.decided if d.outcome != QUARANTINED])
    conn.execute("update sync.inbox set applied_at = now() where id = any(%b::bigint[])",
                 ([c.inbox_id for c in changes],))


@dataclass(frozen=True)
class _Held:
    """The golden records and store states the hub held of a batch's records when it read them."""

    golden: frozenset[str]
    states: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, view: HubView) -> _Held:
        return cls(frozenset(view.golden), frozenset(view.states))


def _written_rows(done: BatchResolution) -> int:
    return 2 * len(done.versions) + len(done.states) + len(done.decided)


class _Writes(WriteBehind):
    """Decided batches written and committed in order, one at a time. With `overlap`, on a thread of their own,
    so that the next batch is read and decided (this process's work) while one is written (the server's):
    `wait_for` makes a batch that reaches what the batch being written reaches wait for its commit first."""

    def __init__(self, overlap: bool) -> None:
        super().__init__(overlap, name="hub-resolve-writes")
        self._reach = Reach()

    def commit(self, transaction: ExitStack, write: Callable[[], None], reach: Reach) -> None:
        """Write a batch in its transaction (`transaction` holds its connection), then commit it. The caller has
        waited for the batch before: were it waited for here, its failure would leave `transaction` unclosed."""
        assert self._writing is None, "one batch written at a time"
        self.submit(partial(_commit, transaction, write))
        self._reach = reach

    def wait_for(self, reach: Reach) -> None:
        if reach.meets(self._reach):
            self.wait()

    def wait(self) -> None:
        """Until the batch being written has committed; raises what failed it."""
        self._reach = Reach()
        super().wait()


def _commit(transaction: ExitStack, write: Callable[[], None]) -> None:
    with transaction:
        write()


class Resolver(HubConnection):
    """Resolves the inbox into the golden records."""

    def resolve_pending(self, entity: Entity, run_id: str | None, priority: Sequence[str],
                        batch_size: int) -> ResolveStats:
        """Apply the inbox to the golden records, batch by batch, each batch in one transaction. While one
        batch is written, the next is read and decided on a connection of its own (three at most, with the
        analysis), unless it reaches a record, a natural key or a store id the one being written reaches."""
        stats = ResolveStats()
        written = 0
        with _Writes(overlap=self.holds_at_once(3)) as writes:
            while True:
                with ExitStack() as transaction:
                    conn = transaction.enter_context(self.connect())
                    transaction.enter_context(conn.transaction())
                    changes = _pending(conn, entity, batch_size)
                    if changes:
                        claimed = _claim(conn, changes, run_id)
                        reach = changes_reach(changes, entity.natural_key)
                        writes.wait_for(reach)
                        view = _read_view(conn, entity, changes)
                        reach |= view_reach(view)  # the natural keys its records hold before the batch
                        held = _Held.of(view)
                        done = resolve_batch(entity.name, changes, claimed, view, priority)
                        reach |= view_reach(view)
                        writes.wait()  # batches commit in order
                        writes.commit(transaction.pop_all(),
                                      partial(_write, conn, entity, changes, done, held, run_id), reach)
                        stats.add(done.stats)
                        written += _written_rows(done)
                if len(changes) < batch_size:
                    break
                if written >= ANALYZE_AFTER_ROWS:
                    self.analyze_grown()
                    written = 0
        if written:
            self.analyze_grown()
        return stats

    def analyze_grown(self) -> list[str]:
        """Analyze the hub's tables that grew (or changed) by more than their size at their last analysis;
        returns their names."""
        with self.connect() as conn:
            return analyze_grown(conn, [("sync", table) for table in _ANALYZED], ANALYZE_AFTER_ROWS)
