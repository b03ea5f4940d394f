"""The three steps of a sync, free of Dagster so that tests call them directly:
capture (store -> hub inbox), resolve (inbox -> golden records), publish (golden records -> store); and the
adoption of a store's records on its first capture, and reconciliation."""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Iterable, Iterator, Sequence

from sync_pipeline.engine.adoption import (
    DEFAULT_ADOPT_WINS,
    AdoptionRefused,
    AdoptionReport,
    AdoptWins,
    Overwrites,
    StoreRecord,
    Winner,
    key_digest,
    match,
    refusal,
    repeated,
)
from sync_pipeline.engine.records import (
    ApplyResult,
    CapturedChange,
    ConcurrentEdit,
    GoldenRecord,
    Op,
    QuarantinedRecord,
    ResolveStats,
)
from sync_pipeline.hub.adoption import (
    adoption_refused,
    golden_by_natural_key,
    record_links,
    unknown_store_ids,
)
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.canonical import CanonicalValueError, parse_timestamp
from sync_pipeline.model.contracts import validate_records
from sync_pipeline.model.entities import Entity
from sync_pipeline.overlap import WriteBehind, read_ahead
from sync_pipeline.settings import SyncSettings
from sync_pipeline.stores.base import (
    CaptureBatch,
    ChangeLogSource,
    ListsIds,
    RawChange,
    Reconcilable,
    ReconcilableStore,
    Source,
    SourceStore,
    TargetStore,
    WebhookSource,
    carried_fields,
    live_hashes,
)
from sync_pipeline.stores.registry import store_spec


# Changes per capture page from a change-log source: a table in a database, read under no API rate limit, so
# its pages need not be as small as the sync's batch size (which is sized for APIs). Each page costs a
# connection, a catalog read and a contract validation whatever its size: at 100 a page those fixed costs
# were most of a bulk load's capture. The page stays bounded, so memory does too.
CHANGE_LOG_PAGE = 5_000
# Records per page of an adoption (ids listed, records read, matched and taken in): a store adopted is a
# change-log source too, and the same bounds hold.
ADOPTION_PAGE = CHANGE_LOG_PAGE


class CaptureNotReady(RuntimeError):
    """The store's change capture is not installed (e.g. a dropped trigger): changes could be missed."""


class AdoptionPending(RuntimeError):
    """The store's adoption was refused: publishing to it now would duplicate the records it holds."""


@dataclass
class CaptureStats:
    read: int = 0
    enqueued: int = 0
    replayed: int = 0  # already in the inbox: a replay changes nothing
    quarantined: int = 0
    hints: int = 0  # webhook hints turned into changes by re-reading their records
    batches: int = 0
    cursor_before: dict[str, Any] | None = None
    cursor_after: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)  # the store's capture status after the run
    adoption: AdoptionReport | None = None  # a store's first capture: its records linked, taken in, left out
    seconds: float = 0.0


@dataclass
class PublishStats:
    read: int = 0
    applied: int = 0
    stale: int = 0
    errors: int = 0
    batches: int = 0
    error_messages: list[str] = field(default_factory=list)
    seconds: float = 0.0


def to_captured(entity: Entity, raw: Sequence[RawChange],
                record_ids: dict[str, str]) -> tuple[list[CapturedChange], list[QuarantinedRecord]]:
    """Validate raw changes against the entity's contract: valid ones become inbox changes, invalid ones
    quarantine rows with a readable reason. Deletes carry no content to validate."""
    quarantined = [QuarantinedRecord(c.store_record_id, c.event_key, c.error, [], c.row) for c in raw if c.error]
    upserts = [c for c in raw if not c.deleted and not c.error]
    result = validate_records(entity, [c.row for c in upserts])
    changes: list[CapturedChange] = []
    quarantined += [QuarantinedRecord(upserts[r.index].store_record_id, upserts[r.index].event_key, r.reason,
                                      r.failures, r.raw) for r in result.rejected]
    valid = {id(upserts[i]): record for i, record in result.valid}  # keyed by the raw change itself

    for c in raw:
        if c.error:
            continue
        try:
            modified_at = parse_timestamp(c.modified_at)
        except CanonicalValueError as exc:
            quarantined.append(QuarantinedRecord(c.store_record_id, c.event_key,
                                                 f"modification time: {exc}", [], c.row))
            continue
        store_id = c.store_record_id or c.record_id
        if c.deleted:
            changes.append(CapturedChange(record_ids.get(store_id), store_id, Op.DELETE, None, modified_at,
                                          c.event_key, c.base_version))
        elif id(c) in valid:
            # A field the row does not hold is one its store does not carry: the change leaves it as it is.
            data = {k: v for k, v in valid[id(c)].items() if k != "id" and k in c.row}
            changes.append(CapturedChange(record_ids.get(store_id), store_id, Op.UPSERT, data, modified_at,
                                          c.event_key, c.base_version))
    return changes, quarantined


def process_hints(hub: Hub, store: SourceStore, entity: Entity, run_id: str | None, settings: SyncSettings) -> int:
    """Turn webhook hints in the inbox into changes, with each record as re-read from its store now
    (a webhook may be late, duplicated or out of order; the record is the truth)."""
    if not isinstance(store, WebhookSource):
        return 0  # a store without webhooks has no hints
    done = 0
    while hints := hub.pending_webhooks(store.name, entity.name, settings.batch_size):
        try:
            fresh = store.read_hints(entity, hints)
        except Exception as exc:  # noqa: BLE001 - the hints stay in the inbox; polling still runs
            hub.record_error(store=store.name, entity=entity.name, operation="capture", error=exc, run_id=run_id,
                             payload={"webhook_hints": [h["event_key"] for h in hints[:20]]})
            return done
        raw = [fresh[h["event_key"]] for h in hints]
        record_ids = hub.record_ids_for(store.name, entity.name, [h["store_record_id"] for h in hints])
        changes, quarantined = to_captured(entity, raw, record_ids)
        hub.fulfil_hints(store.name, entity.name, changes, quarantined, run_id)
        done += len(hints)
    return done


def capture(hub: Hub, store: SourceStore, entity: Entity, run_id: str | None, settings: SyncSettings, *,
            keep_change_log: bool = False) -> CaptureStats:
    """Move a store's changes since its cursor into the hub's inbox, batch by batch, and drop the change-log
    rows the hub has committed (unless `keep_change_log`, as a plan does).

    A store's first capture also adopts the records it already holds, which its change log never saw
    (`adopt`); its cursor is saved only once they are, so a refused adoption is tried again next run."""
    if carried_fields(store, entity) is None:  # the configuration gives this store none of the entity
        return CaptureStats()
    started = time.monotonic()
    stats = CaptureStats(cursor_before=hub.get_cursor(store.name, entity.name))
    stats.hints = process_hints(hub, store, entity, run_id, settings)
    cursor = stats.cursor_before
    status = store.capture_status(entity, cursor)
    if not status.get("ready", True):
        raise CaptureNotReady(f"change capture of {entity.name} in {store.name} is not installed "
                              f"({status}); run `sync-pipeline install` and reconcile")
    adopting = cursor is None and isinstance(store, ChangeLogSource) and isinstance(store, Reconcilable)
    page = max(settings.batch_size, CHANGE_LOG_PAGE) if isinstance(store, ChangeLogSource) else settings.batch_size
    # The next page is read and validated while this one is enqueued (on connections of their own).
    for batch, (changes, quarantined) in read_ahead(_captured_pages(hub, store, entity, cursor, page),
                                                    hub.holds_at_once(2)):
        stats.batches += 1
        stats.read += len(batch.changes)
        new = hub.enqueue(store.name, entity.name, changes, quarantined, None if adopting else batch.cursor,
                          run_id)
        stats.enqueued += new
        stats.replayed += len(changes) - new
        stats.quarantined += len(quarantined)
        cursor = batch.cursor
        if isinstance(store, ChangeLogSource) and batch.changes and not (adopting or keep_change_log):
            store.prune(entity, cursor)  # the rows before the page being read ahead
    if adopting and cursor is not None:
        stats.adoption = adopt(hub, store, entity, run_id, settings)
        hub.set_cursor(store.name, entity.name, cursor)
        if isinstance(store, ChangeLogSource) and not keep_change_log:
            store.prune(entity, cursor)
    stats.cursor_after = cursor
    stats.status = store.capture_status(entity, cursor)
    hub.close_step_errors(store.name, entity.name, "capture")  # this step went through
    stats.seconds = time.monotonic() - started
    return stats


def _captured_pages(hub: Hub, store: SourceStore, entity: Entity, cursor: dict[str, Any] | None, page: int
                    ) -> Iterator[tuple[CaptureBatch, tuple[list[CapturedChange], list[QuarantinedRecord]]]]:
    """The store's changes after the cursor, a page at a time, validated (`to_captured`) with the hub's ids
    of their records."""
    while True:
        batch = store.capture(entity, cursor, page)
        record_ids = hub.record_ids_for(store.name, entity.name,
                                        [c.store_record_id or c.record_id for c in batch.changes])
        yield batch, to_captured(entity, batch.changes, record_ids)
        if not batch.more:
            return
        cursor = batch.cursor


def adopt(hub: Hub, store: SourceStore, entity: Entity, run_id: str | None, settings: SyncSettings,
          page: int = ADOPTION_PAGE) -> AdoptionReport:
    """Adopt the records a store holds that the hub knows nothing of (neither captured from it nor written to
    it): link each to the hub's record with the same natural key, or take it in as a new one, or keep it out
    when it cannot be told which record it is. For a linked record whose values differ, the store's
    `adopt_wins` policy says which side's values win (under `most_recent`, a record's time is what the store
    reports: a Postgres store knows none for a row the sync never saw change, and gives the time it read
    it). Raises AdoptionRefused before taking in any of these records when more records would be
    overwritten than `settings.adoption_confirm_threshold` and the operator did not confirm
    (`settings.confirm_adoption`).

    Memory stays bounded by a `page` whatever the store holds: its ids are listed page by page, and the
    records read twice. The first pass only counts the overwrites and finds the natural key values several
    of its records share (kept as 8-byte digests); the second takes the records in page by page, but for
    those sharing a value, matched together at the end (they are kept out, each naming the others)."""
    assert isinstance(store, Reconcilable) and isinstance(store, ListsIds)
    policy = settings.adopt_wins.get(store.name, DEFAULT_ADOPT_WINS)
    report = AdoptionReport(store.name, entity.name, policy)
    if next(_unknown_pages(hub, store, store.name, entity, page), None) is None:
        return report
    resolve(hub, entity, run_id, settings)  # what the other stores sent this run is matched against too
    digests, overwriting = array("Q"), array("Q")
    for ids in _unknown_pages(hub, store, store.name, entity, page):
        changes, _ = _read_to_adopt(store, entity, ids, run_id)
        digests.extend(d for c in changes if (d := _digest(entity, c)) is not None)
        # Linked within the page; a value the store's other pages share too is not (`shared` below).
        links = _match(hub, store.name, entity, changes, policy).links
        overwriting.extend(key_digest(link.key) for link in links if link.overwrites)
    shared = repeated(digests)
    reason = refusal([Overwrites(store.name, entity.name, sum(1 for d in overwriting if d not in shared))],
                     settings.adoption_confirm_threshold)
    if reason and not settings.confirm_adoption:
        raise AdoptionRefused(reason)
    sharing: list[CapturedChange] = []
    for ids in _unknown_pages(hub, store, store.name, entity, page):
        changes, quarantined = _read_to_adopt(store, entity, ids, run_id)
        sharing += [c for c in changes if _digest(entity, c) in shared]
        alone = [c for c in changes if _digest(entity, c) not in shared]
        report.add(_take_in(hub, store.name, entity, alone, quarantined, run_id, settings, policy))
    if sharing:  # matched together, so that each names the others
        report.add(_take_in(hub, store.name, entity, sharing, [], run_id, settings, policy))
    return report


def _unknown_pages(hub: Hub, store: ListsIds, name: str, entity: Entity, page: int) -> Iterator[list[str]]:
    """The ids of the store's records the hub knows nothing of, a page of the store's ids at a time."""
    after = None
    while ids := store.store_ids(entity, after, page):
        after = ids[-1]
        if unknown := unknown_store_ids(hub, name, entity.name, ids):
            yield unknown


def _read_to_adopt(store: SourceStore, entity: Entity, ids: Sequence[str], run_id: str | None
                   ) -> tuple[list[CapturedChange], list[QuarantinedRecord]]:
    """The records as they are now (those gone since listed left out), validated as changes to adopt."""
    raw = [replace(c, event_key=f"adopt:{run_id}:{c.store_record_id or c.record_id}")
           for c in store.refresh(entity, ids).values() if not c.deleted]
    return to_captured(entity, raw, {})


def _digest(entity: Entity, change: CapturedChange) -> int | None:
    value = (change.data or {}).get(entity.natural_key) if entity.natural_key else None
    return None if value is None else key_digest(value)


def _match(hub: Hub, store: str, entity: Entity, changes: Sequence[CapturedChange], policy: AdoptWins
           ) -> AdoptionReport:
    key = entity.natural_key
    values = {str(c.data[key]) for c in changes if key and c.data and c.data.get(key) is not None}
    return match(store, entity.name, key,
                 [StoreRecord(c.store_record_id, c.data or {}, c.modified_at) for c in changes],
                 golden_by_natural_key(hub, store, entity.name, key, values) if key else {}, policy)


def _take_in(hub: Hub, store: str, entity: Entity, changes: Sequence[CapturedChange],
             quarantined: list[QuarantinedRecord], run_id: str | None, settings: SyncSettings,
             policy: AdoptWins) -> AdoptionReport:
    """Match records and take them in: new ones, and linked ones whose values win (each as an edit made on
    the golden version it was matched to); those that cannot be linked go to quarantine; the links are
    written once resolved."""
    report = _match(hub, store, entity, changes, policy)
    upserts = {c.store_record_id: c for c in changes}
    taken_in = [upserts[i] for i in report.new] + [
        replace(upserts[link.store_record_id], record_id=link.record_id, base_version=link.version)
        for link in report.links if link.winner is Winner.STORE]
    key = entity.natural_key
    kept_out = [QuarantinedRecord(u.store_record_id, upserts[u.store_record_id].event_key, u.reason,
                                  [{"check": "adoption by natural key", "column": key}],
                                  upserts[u.store_record_id].data or {})
                for u in report.unmatched if not u.taken_in]
    hub.enqueue(store, entity.name, taken_in, quarantined + kept_out, None, run_id)
    resolve(hub, entity, run_id, settings)  # the next page, and the next store adopted, match against these
    record_links(hub, report, run_id)
    return report


def resolve(hub: Hub, entity: Entity, run_id: str | None, settings: SyncSettings) -> ResolveStats:
    return hub.resolve_pending(entity, run_id, settings.store_priority, settings.resolve_batch_size)


def publish(hub: Hub, store: TargetStore, entity: Entity, run_id: str | None, settings: SyncSettings,
            batch_size: int | None = None) -> PublishStats:
    """Write the golden records the store has not seen, batch by batch (by default the store's own publish
    batch size, else the sync's). A failed batch is recorded in the error log and left unseen, so the next
    run retries it; the other batches go on."""
    if carried_fields(store, entity) is None:  # the configuration gives this store none of the entity
        return PublishStats()
    if adoption_refused(hub, store.name, entity.name):
        raise AdoptionPending(f"the adoption of {entity.name} in {store.name} was refused and waits for "
                              f"confirmation: nothing is written there until it is adopted")
    started = time.monotonic()
    stats = PublishStats()
    batch_size = batch_size or store_spec(store.name).publish_batch_size or settings.batch_size
    # The next page is read from the hub while this one is written to the store, and what a batch's write did
    # is recorded in the hub while the next is written, each on a connection of its own. A record referring to
    # its own entity may need the store id the hub learns of the record before it: that waits.
    behind = hub.holds_at_once(3) and entity.name not in entity.references.values()
    with WriteBehind(behind, name="publish-records") as recording:
        for records in read_ahead(_unseen_pages(hub, store.name, entity.name, batch_size), hub.holds_at_once(2)):
            stats.batches += 1
            stats.read += len(records)
            try:
                result = store.apply(entity, records)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, none stops the other batches
                stats.errors += len(records)
                stats.error_messages.append(f"{type(exc).__name__}: {exc}"[:300])
                recording.submit(partial(
                    hub.record_error, store=store.name, entity=entity.name, operation="publish", error=exc,
                    run_id=run_id, payload={"record_ids": [g.record_id for g in records[:20]]},
                    record_ids=[g.record_id for g in records]))
                continue
            stats.errors += len(result.failed)
            stats.error_messages += [f"{type(error).__name__}: {error}"[:300] for error in result.failed.values()]
            stats.applied += len(result.applied)
            stats.stale += len(result.stale)
            recording.submit(partial(_record_write, hub, store.name, entity, records, result, run_id))
    if not stats.errors:
        hub.close_step_errors(store.name, entity.name, "publish")  # this step went through
    hub.close_errors_of_synced(store.name, entity.name)  # e.g. a write that landed though its request failed
    stats.seconds = time.monotonic() - started
    return stats


def _record_write(hub: Hub, store: str, entity: Entity, records: Sequence[GoldenRecord], result: ApplyResult,
                  run_id: str | None) -> None:
    """What a batch's write did, in the hub: edits the store refused to overwrite taken in, each failed record's
    error kept (the record stays unseen, so the next run retries it), the others seen by the store."""
    take_in_edits(hub, store, entity, result.failed.values(), run_id)
    for record_id, error in result.failed.items():
        hub.record_error(store=store, entity=entity.name, record_id=record_id, operation="publish", error=error,
                         run_id=run_id)
    written = [g for g in records if g.record_id not in result.failed]
    hub.mark_seen(store, written, result.store_ids, run_id)
    hub.close_record_errors(store, entity.name, [g.record_id for g in written])


def _unseen_pages(hub: Hub, store: str, entity: str, size: int) -> Iterator[list[GoldenRecord]]:
    after = None
    while records := hub.unseen_by(store, entity, size, after):
        after = records[-1].record_id
        yield records


def take_in_edits(hub: Hub, store: str, entity: Entity, failures: Iterable[BaseException],
                  run_id: str | None) -> None:
    """Put records a target refused to overwrite (edited there since the hub read them) into the inbox, as
    re-read, so the next resolve takes the edit in (as a conflict where the hub changed too)."""
    raw = [e.reread for e in failures if isinstance(e, ConcurrentEdit)]
    if raw:
        record_ids = hub.record_ids_for(store, entity.name, [c.store_record_id or c.record_id for c in raw])
        changes, quarantined = to_captured(entity, raw, record_ids)
        hub.enqueue(store, entity.name, changes, quarantined, None, run_id)


def close_errors_found_held(hub: Hub, store: str, entity: Entity, golden: dict[str, tuple[int, Any]],
                            live: dict[str, str], inventory: dict[str, str]) -> int:
    """Close the publish errors of records a store's listing shows at their golden version (the same content,
    or absent for a deleted record): a write that landed although its request failed, never retried."""
    held = {i: golden[i][0] for i in live.keys() & inventory.keys() if live[i] == inventory[i]}
    held.update((i, version) for i, (version, data) in golden.items() if data is None and i not in inventory)
    return hub.close_errors_of_held(store, entity.name, held)


@dataclass
class ReconcileStats:
    store_rows: int = 0
    hub_rows: int = 0
    new_in_store: int = 0  # rows the sync never captured: taken in as changes
    resent: int = 0  # missing or different in the store: golden versions re-sent
    deleted: int = 0  # held once, absent now: deleted everywhere
    refused_deletes: int = 0  # too many absent to trust the listing: nothing deleted
    unknown_in_store: int = 0  # in a target only, rows the hub never had: reported, left alone


def reconcile(hub: Hub, store: ReconcilableStore, entity: Entity, run_id: str | None,
              settings: SyncSettings) -> ReconcileStats:
    """Compare a whole store with the hub and repair what the incremental sync missed.

    Missing or different rows are re-sent from the hub. In a store we capture from, rows the hub never saw
    are taken in as changes, and records the store once held and no longer lists become deletes, but only
    when they are few (below `settings.reconcile_delete_threshold` of the live records): an empty or failed
    listing must never
    wipe the other stores. A target we never capture from (BigQuery) cannot speak for the records: what it
    lacks is re-sent, and what it holds that the hub never had is only counted. Both sides are compared over
    the fields the store carries: a field it does not carry is never re-sent for."""
    fields = carried_fields(store, entity)
    if fields is None:
        return ReconcileStats()  # the store holds none of these records: nothing to compare or repair
    captures = isinstance(store, Source)
    golden = hub.golden_snapshot(entity.name)
    live = live_hashes(entity, golden, fields)  # hashed as the store's inventory is: its fields alone
    inventory = store.inventory(entity)
    stats = ReconcileStats(store_rows=len(inventory), hub_rows=len(live))
    missing = live.keys() - inventory.keys()
    held = hub.held_by(store.name, entity.name) if captures else {}
    absent = sorted(missing & held.keys())
    unknown = sorted(i for i in inventory.keys() - live.keys() if i not in golden)
    tombstoned = [i for i in inventory.keys() - live.keys() if i in golden]
    different = [i for i in inventory.keys() & live.keys() if inventory[i] != live[i]]
    resend = sorted((missing - held.keys()) | set(different) | set(tombstoned))
    stats.resent = hub.reassert(entity.name, resend, run_id) if resend else 0
    close_errors_found_held(hub, store.name, entity, golden, live, inventory)
    if not isinstance(store, Source):
        stats.unknown_in_store = len(unknown)
        return stats

    known = hub.store_ids_for(store.name, entity.name, unknown + absent)
    store_ids = {i: known.get(i, i) for i in unknown + absent}
    raw = list(store.refresh(entity, [store_ids[i] for i in unknown]).values()) if unknown else []
    delete_threshold = settings.reconcile_delete_threshold
    if absent and len(absent) > delete_threshold * max(len(live), 1):
        stats.refused_deletes = len(absent)
        hub.record_error(store=store.name, entity=entity.name, operation="reconcile", run_id=run_id,
                         error=RuntimeError(f"{len(absent)} of {len(live)} {entity.name} absent from {store.name}: "
                                            f"above the {delete_threshold:.0%} threshold, nothing deleted"),
                         payload={"absent_sample": absent[:20]})
    elif absent:
        # Dated when the store last showed the record, so the delete does not outrank later edits elsewhere.
        raw += [RawChange(record_id=store_ids[i], deleted=True, row={"id": store_ids[i]}, modified_at=held[i],
                          event_key=f"reconcile:{run_id}:{i}", store_record_id=store_ids[i]) for i in absent]
        stats.deleted = len(absent)
    if raw:
        record_ids = hub.record_ids_for(store.name, entity.name, [c.store_record_id or c.record_id for c in raw])
        changes, quarantined = to_captured(entity, [replace(c, event_key=f"reconcile:{run_id}:{c.store_record_id}")
                                                    for c in raw], record_ids)
        hub.enqueue(store.name, entity.name, changes, quarantined, None, run_id)
        stats.new_in_store = len(unknown)
    return stats
