"""The steps of a sync, free of Dagster so that tests call them directly: capture (store -> hub inbox), publish
(golden records -> store) and reconciliation; a store's first capture adopts what it holds (`adoption`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Iterable, Iterator, Sequence

from sync_pipeline.engine.adoption import AdoptionReport
from sync_pipeline.engine.records import ApplyResult, CapturedChange, ConcurrentEdit, GoldenRecord, QuarantinedRecord
from sync_pipeline.hub.adoption import adoption_refused
from sync_pipeline.hub.hub import Hub
from sync_pipeline.hub.resolve import ANALYZE_AFTER_ROWS
from sync_pipeline.model.entities import Entity
from sync_pipeline.overlap import WriteBehind, read_ahead
from sync_pipeline.pipeline.adoption import adopt
from sync_pipeline.pipeline.changes import CHANGE_LOG_PAGE, to_captured
from sync_pipeline.settings import SyncSettings
from sync_pipeline.stores.base import (
    CaptureBatch,
    ChangeLogSource,
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
    if stats.read >= ANALYZE_AFTER_ROWS:  # the outcomes and states a bulk publish wrote, read by the checks next
        hub.analyze_grown()
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
