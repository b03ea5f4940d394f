"""A store's first capture adopts the records it already holds, which its change log never saw: each is linked
to the hub's record with the same natural key, taken in as a new one, or kept out when it cannot be told which
record it is (`engine.adoption` decides, `hub.adoption` records)."""

from __future__ import annotations

from array import array
from dataclasses import replace
from typing import Iterator, Sequence

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
from sync_pipeline.engine.records import CapturedChange, QuarantinedRecord
from sync_pipeline.hub.adoption import golden_by_natural_key, record_links, unknown_store_ids
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.entities import Entity
from sync_pipeline.pipeline.changes import CHANGE_LOG_PAGE, resolve, to_captured
from sync_pipeline.settings import SyncSettings
from sync_pipeline.stores.base import ListsIds, Reconcilable, SourceStore

# Records per page of an adoption (ids listed, records read, matched and taken in): a store adopted is a
# change-log source too, and the same bounds hold.
ADOPTION_PAGE = CHANGE_LOG_PAGE


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
