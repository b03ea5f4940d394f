"""Twenty CRM as a store: capture by polling `updatedAt` (and by re-reading webhook hints), publish by
batch upsert. Twenty has ids of its own: an `IdMap` from the hub translates them both ways.

Section numbers (§) refer to docs/twenty-api.md."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from sync_pipeline.engine.records import ApplyResult, ConcurrentEdit, GoldenRecord
from sync_pipeline.model.canonical import (
    DELETED_HASH,
    CanonicalValueError,
    canonical_record,
    content_hash,
    parse_timestamp,
)
from sync_pipeline.model.entities import ENTITIES, Entity
from sync_pipeline.stores.base import (
    CaptureBatch,
    ConsistencyReport,
    Health,
    IdMap,
    RawChange,
    compare_inventory,
    live_data,
    translate_references,
)
from sync_pipeline.stores.limits import refusals
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.errors import TwentyAuthError, TwentyError, TwentyNotFound
from sync_pipeline.stores.twenty.limits import LIMITS
from sync_pipeline.stores.twenty.mapping import (
    MappingError,
    object_mapping,
    to_canonical,
    to_twenty,
    twenty_object,
)
from sync_pipeline.stores.twenty.poll import SETTLE, SWEEP_KEYS, PollWindow, due, iso_ms

log = logging.getLogger(__name__)

STORE_NAME = "twenty"
# Webhooks name objects in the singular (§9.1).
ENTITY_BY_OBJECT_SINGULAR = {"company": "companies", "person": "people", "opportunity": "opportunities"}
# §4.4: a filter that mentions deletedAt lists soft-deleted rows too.
_WITH_DELETED = "or(deletedAt[is]:NULL,deletedAt[is]:NOT_NULL)"
_EPOCH = "1970-01-01T00:00:00.000Z"
# Ids per `id[in]` filter when re-reading records: keeps the request URL short.
_IDS_PER_FILTER = 50
# The id listing's state in the capture cursor, carried from walk to walk of the poll.
_LISTING_KEYS = ("ids_listed_at", "ids_listed", "ids_vanished", "ids_vanished_refused")
# A listing finding more destroyed records than this share of those Twenty is known to hold (and more than a
# handful) is distrusted: its deletes are refused, as reconciliation refuses them, and reported.
_MAX_VANISHED_SHARE = 0.05
_VANISHED_ALWAYS_BELIEVED = 10


class PendingReference(Exception):
    """A record that cannot be written before the record it references."""


class DestroyedUnread(Exception):
    """A record destroyed in Twenty whose destroy the hub has not read yet: written, it would be recreated
    unread. It waits until its webhook or the next listing of ids brings the destroy in, dated."""


def _gone(store_id: str, deleted_at: datetime, event_key: str) -> RawChange:
    """A record Twenty no longer has at all (destroyed, §5.5): a delete as of `deleted_at`."""
    return RawChange(record_id=store_id, deleted=True, row={"id": store_id}, modified_at=deleted_at,
                     event_key=event_key, store_record_id=store_id)


def _destroy_reported_at(hint: Mapping[str, Any]) -> datetime | None:
    """When a `*.destroyed` webhook says its record was destroyed: its `eventDate` (§9.2, built with the
    event), else when it arrived; None for any other event."""
    payload = hint.get("payload") or {}
    if not str(payload.get("eventName", "")).endswith(".destroyed"):
        return None
    try:
        return parse_timestamp(payload["eventDate"])
    except (KeyError, CanonicalValueError):
        received_at: datetime | None = hint.get("received_at")
        return received_at


def _by_store_id(changes: list[RawChange]) -> dict[str, RawChange]:
    """Changes read from Twenty by Twenty's id, which `raw_changes` sets on each."""
    out = {}
    for c in changes:
        if c.store_record_id is None:
            raise ValueError(f"change {c.event_key} read from Twenty has no Twenty id")
        out[c.store_record_id] = c
    return out


def raw_changes(entity: Entity, id_map: IdMap, records: list[dict[str, Any]]) -> list[RawChange]:
    """Twenty records as the capture reads them: mapped to canonical fields, references translated to the hub's
    ids; a record that cannot be mapped carries its reason (`RawChange.error`)."""
    rows, errors = [], {}
    for record in records:
        try:
            rows.append((record, to_canonical(entity, record)))
        except MappingError as exc:
            rows.append((record, {"id": record.get("id")}))
            errors[record.get("id")] = f"cannot be mapped from Twenty: {exc}"
    translate_references(entity, [row for _, row in rows], id_map, to_store=False)
    return [RawChange(record_id=record["id"], deleted=record.get("deletedAt") is not None, row=row,
                      modified_at=record.get("updatedAt"),
                      event_key=f"poll:{record['id']}:{record.get('updatedAt')}",
                      store_record_id=record["id"], error=errors.get(record["id"]))
            for record, row in rows]


class TwentyStore:
    name = STORE_NAME

    def __init__(self, client: TwentyClient, id_map: IdMap, overlap: timedelta = timedelta(minutes=5),
                 id_listing_interval: timedelta = timedelta(minutes=15), settle: timedelta = SETTLE) -> None:
        self.client = client
        self.id_map = id_map
        self.window = PollWindow(overlap, min(settle, overlap))
        self.id_listing_interval = id_listing_interval

    # -- capture -----------------------------------------------------------------------------------

    def capture(self, entity: Entity, cursor: dict[str, Any] | None, limit: int) -> CaptureBatch:
        """Records changed since a little before the watermark (the whole overlap window once per overlap),
        soft deletes included.

        `updatedAt` is the writing transaction's start time, so a late commit can carry a time behind
        rows already read (§10.5): the overlap re-reads that window (see `PollWindow`) and the inbox
        drops what it has seen, keyed by (id, updatedAt). One walk keeps its filter and pages with
        `starting_after`, so a crash resumes the walk; only a finished walk moves the watermark.

        A destroyed record leaves nothing to poll: before a walk starts, at most once per
        `id_listing_interval`, a listing of ids finds the records destroyed without a webhook."""
        cursor = dict(cursor or {"watermark": _EPOCH})
        vanished: list[RawChange] = []
        listing = {k: cursor[k] for k in _LISTING_KEYS if k in cursor}
        if "page_after" not in cursor and self._listing_due(cursor):
            vanished, listing = self._list_vanished(entity)
        sweep = {k: cursor[k] for k in SWEEP_KEYS if k in cursor}
        walk_from, sweeping = cursor.get("walk_from"), False
        if walk_from is None:
            walk_from, sweeping = self.window.start(cursor)
        started_at = iso_ms(datetime.now(timezone.utc))
        query = f'and(updatedAt[gte]:"{walk_from}",{_WITH_DELETED})'
        records: list[dict[str, Any]] = []
        page_after = cursor.get("page_after")
        more = False
        for page in self.client.pages(twenty_object(entity), filter=query, starting_after=page_after):
            if sweeping:  # dated by its first page, read before anything the sweep reads later
                sweep, sweeping = self.window.sweep_state(cursor["watermark"], started_at, page.served_at), False
            records += page.records
            page_after = page.end_cursor
            more = page.has_next_page
            if len(records) >= limit:
                break
        changes = vanished + raw_changes(entity, self.id_map, records)
        newest = max([cursor["watermark"], *(r["updatedAt"] for r in records if r.get("updatedAt"))],
                     key=parse_timestamp)
        polled_at = iso_ms(datetime.now(timezone.utc))
        if more:
            next_cursor = {"watermark": cursor["watermark"], "walk_from": walk_from, "page_after": page_after,
                           "walk_max": max(newest, cursor.get("walk_max", newest), key=parse_timestamp),
                           "polled_at": polled_at, **listing, **sweep}
        else:
            next_cursor = {"watermark": max(newest, cursor.get("walk_max", newest), key=parse_timestamp),
                           "polled_at": polled_at, **listing, **sweep}
        return CaptureBatch(changes=changes, cursor=next_cursor, more=more)

    def _listing_due(self, cursor: dict[str, Any]) -> bool:
        return due(cursor.get("ids_listed_at"), self.id_listing_interval)

    def _list_vanished(self, entity: Entity) -> tuple[list[RawChange], dict[str, Any]]:
        """Deletes for the records the hub knows Twenty to hold that Twenty no longer has (destroyed, their
        webhook lost), and the listing's state for the cursor.

        Every id is listed (soft-deleted ones too: the poll reports those), then the ids missing are re-read
        (one published meanwhile is found): a record still absent is destroyed. No webhook dated it, so the
        delete is dated when the listing saw it missing, the best evidence there is."""
        held = self.id_map.held(entity.name)  # before the walk: a record published later is not expected
        listed = set(self.client.ids(twenty_object(entity), filter=_WITH_DELETED))
        listed_at = iso_ms(datetime.now(timezone.utc))
        missing = sorted(held.keys() - listed)
        gone = sorted(set(missing) - self._reread(entity, missing).keys())
        state: dict[str, Any] = {"ids_listed_at": listed_at, "ids_listed": len(listed),
                                 "ids_vanished": len(gone)}
        if len(gone) > max(_VANISHED_ALWAYS_BELIEVED, _MAX_VANISHED_SHARE * len(held)):
            # Too many at once to trust the listing: nothing deleted, the count shown in the capture status
            # (and so in the capture asset's metadata) until a listing agrees with the hub again.
            state["ids_vanished_refused"] = len(gone)
            log.warning("Twenty %s: %d of %d records the hub knows Twenty to hold were not found (e.g. %s); "
                        "too many to trust, none deleted", twenty_object(entity), len(gone), len(held), gone[:5])
            return [], state
        return [_gone(i, parse_timestamp(listed_at), f"vanished:{i}:{listed_at}") for i in gone], state

    def _reread(self, entity: Entity, store_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The records as Twenty holds them now, soft-deleted ones included, by id: a destroyed one is
        absent."""
        found: dict[str, dict[str, Any]] = {}
        step = _IDS_PER_FILTER
        for chunk in (store_ids[i:i + step] for i in range(0, len(store_ids), step)):
            ids = ",".join(f'"{i}"' for i in chunk)
            query = f"and(id[in]:[{ids}],{_WITH_DELETED})"
            found.update((record["id"], record) for record in self.client.list(twenty_object(entity), filter=query))
        return found

    def refresh(self, entity: Entity, store_ids: Sequence[str]) -> dict[str, RawChange]:
        """Re-read records as they are now, by Twenty id. Records gone from every list (destroyed) come back
        as deletes dated now: nothing says when they went."""
        return self._refresh(entity, store_ids, {})

    def read_hints(self, entity: Entity, hints: Sequence[Mapping[str, Any]]) -> dict[str, RawChange]:
        """Re-read the records webhook hints name, by the hints' event keys: a webhook says something changed,
        the record says what. A record that is gone (the re-read's 404 confirms the destroy) is deleted as of
        the earliest `*.destroyed` event among its hints, not as of the re-read, so that an edit made
        elsewhere after the destroy still wins (last write wins); gone without such a hint, as of now."""
        destroyed_at: dict[str, datetime] = {}
        for h in hints:
            if (at := _destroy_reported_at(h)) is not None:
                store_id = h["store_record_id"]
                destroyed_at[store_id] = min(at, destroyed_at.get(store_id, at))
        fresh = self._refresh(entity, sorted({h["store_record_id"] for h in hints}), destroyed_at)
        return {h["event_key"]: replace(fresh[h["store_record_id"]], event_key=h["event_key"]) for h in hints}

    def _refresh(self, entity: Entity, store_ids: Sequence[str], destroyed_at: Mapping[str, datetime]
                 ) -> dict[str, RawChange]:
        found = self._reread(entity, store_ids)
        changes = _by_store_id(raw_changes(entity, self.id_map, list(found.values())))
        now = datetime.now(timezone.utc)
        for store_id in store_ids:
            if store_id not in changes:
                # An event's date is never trusted past the moment it is confirmed.
                changes[store_id] = _gone(store_id, min(destroyed_at.get(store_id, now), now),
                                          f"destroyed:{store_id}")
        return changes

    def capture_status(self, entity: Entity, cursor: dict[str, Any] | None) -> dict[str, Any]:
        """Polling is as current as its last poll: a quiet CRM leaves the watermark behind, rightly."""
        if not cursor or "polled_at" not in cursor:
            return {"ready": True, "never_captured": True}
        since = datetime.now(timezone.utc) - parse_timestamp(cursor["polled_at"])
        listing = {k: cursor[k] for k in _LISTING_KEYS if k in cursor}
        return {"ready": True, "seconds_behind": round(since.total_seconds(), 1), "watermark": cursor["watermark"],
                **listing}

    # -- publish -----------------------------------------------------------------------------------

    def apply(self, entity: Entity, records: Sequence[GoldenRecord]) -> ApplyResult:
        """Upsert live records in batches (matching by id and unique fields, so a record created elsewhere
        is linked to an existing Twenty record rather than duplicated); soft-delete tombstones."""
        result = ApplyResult()
        known = self.id_map.holding(entity.name, [g.record_id for g in records])
        # A value Twenty cannot hold fails alone, unsent: in a batch it would fail every record (an
        # amountMicros from 2^64 up cannot even be encoded as the request's JSON).
        result.failed.update(refusals(LIMITS, entity, records))
        upserts = [g for g in records if not g.deleted and g.record_id not in result.failed]
        # References go out as Twenty's ids. A record whose referenced record is alive in the hub but not
        # in Twenty yet waits (it is retried after its target is published): sent without the link, it
        # would come back from Twenty as an edit removing it. A reference to a record the hub no longer
        # holds alive can never be linked, and goes out as null, as Twenty itself nulls it on delete.
        in_twenty: dict[str, dict[str, str]] = {}
        alive: dict[str, set[str]] = {}
        for col, target in entity.references.items():
            values = sorted({v for g in upserts if (v := live_data(g).get(col))})
            in_twenty.setdefault(target, {}).update(self.id_map.holding(target, values))
            alive.setdefault(target, set()).update(self.id_map.live(target, values))

        def translate(entity_name: str, canonical_id: str) -> str | None:
            if entity_name == entity.name:
                return known.get(canonical_id, canonical_id)
            return in_twenty.get(entity_name, {}).get(canonical_id)

        payloads, sent = [], []
        for g in upserts:
            data = {"id": g.record_id, **live_data(g)}
            waiting = []
            for col, target in entity.references.items():
                value = data.get(col)
                if value and value not in in_twenty[target]:
                    if value in alive[target]:
                        waiting.append(f"{col} {value}")
                    else:
                        data[col] = None
            if waiting:
                result.failed[g.record_id] = PendingReference(
                    f"waits for {', '.join(waiting)} to reach Twenty; retried next run")
                continue
            try:
                payloads.append(to_twenty(entity, data, translate))
                sent.append(g)
            except MappingError as exc:
                result.failed[g.record_id] = exc
        # An edit made in Twenty since the hub last read the record would be overwritten unread: it is
        # taken in as a change instead, and the record waits for the next run. A destroy would be undone.
        edited, destroyed = self._edited_since_read(entity, sent, known)
        for record_id, change in edited.items():
            result.failed[record_id] = ConcurrentEdit(STORE_NAME, change)
        for record_id in destroyed:
            result.failed[record_id] = DestroyedUnread(
                "destroyed in Twenty since the hub last read it; waits for the destroy to be read (its webhook "
                "or the next listing of ids)")
        kept = [i for i, g in enumerate(sent) if g.record_id not in result.failed]
        payloads, sent = [payloads[i] for i in kept], [sent[i] for i in kept]
        if payloads:
            batch = self.client.batch_create(twenty_object(entity), payloads, upsert=True)
            for accepted in batch.accepted:
                g = sent[accepted.index]
                result.applied.append(g.record_id)
                result.store_ids[g.record_id] = accepted.id
            for failed in batch.failed:
                result.failed[sent[failed.index].record_id] = failed.error
        for g in (g for g in records if g.deleted):
            store_id = known.get(g.record_id)
            if store_id is None:
                result.stale.append(g.record_id)  # Twenty never had it: nothing to delete
                continue
            try:
                self.client.soft_delete(twenty_object(entity), store_id)
                result.applied.append(g.record_id)
            except TwentyNotFound:
                result.stale.append(g.record_id)  # already gone
            except TwentyAuthError:
                raise
            except TwentyError as exc:
                result.failed[g.record_id] = exc
        return result

    def _edited_since_read(self, entity: Entity, records: Sequence[GoldenRecord], known: dict[str, str]
                           ) -> tuple[dict[str, RawChange], list[str]]:
        """Record id -> the record as re-read now, for those Twenty holds in a content that is neither what
        the hub last knew it to hold nor the version about to be written, with an `updatedAt` past every
        change captured from Twenty for it (a content that lost a conflict was read, and is overwritten).
        And the ids of the records the hub knows Twenty to hold alive that are gone, with no delete of them
        read yet: destroyed since. Their destroy is not dated here (the re-read only bounds it): the webhook's
        event date, or the listing that finds it, dates it."""
        if not records:
            return {}, []
        last_read = self.id_map.last_read(entity.name, [g.record_id for g in records])
        twenty_ids = {known.get(g.record_id, g.record_id): g for g in records}
        found = self._reread(entity, list(twenty_ids))
        missing = [i for i in twenty_ids if i not in found]
        read_as_gone = self.id_map.read_as_gone(entity.name, missing) if missing else set()
        destroyed = []
        for store_id in missing:
            record_id = twenty_ids[store_id].record_id
            held_alive = last_read.get(record_id, (None, None))[0] not in (None, DELETED_HASH)
            if held_alive and store_id not in read_as_gone:
                destroyed.append(record_id)
        edited = {}
        for change in raw_changes(entity, self.id_map, list(found.values())):
            g = twenty_ids[change.record_id]
            seen_hash, read_at = last_read.get(g.record_id, (None, None))
            try:
                digest = content_hash(None if change.deleted else canonical_record(entity, change.row))
                updated_at = parse_timestamp(change.modified_at)
            except CanonicalValueError:
                continue  # unreadable: the capture quarantines it, and the write may repair it
            if (change.error is None and digest not in (seen_hash, g.content_hash)
                    and (read_at is None or updated_at > read_at)):
                edited[g.record_id] = change
        return edited, destroyed

    # -- reads -------------------------------------------------------------------------------------

    def inventory(self, entity: Entity) -> dict[str, str]:
        """Record id -> content hash of every live record, over the fields Twenty carries."""
        records = list(self.client.list(twenty_object(entity)))
        by_store_id = _by_store_id(raw_changes(entity, self.id_map, records))
        canonical = self.id_map.to_canonical(entity.name, list(by_store_id))
        fields = object_mapping(entity).columns()
        out = {}
        for store_id, change in by_store_id.items():
            try:
                digest = content_hash(canonical_record(entity, change.row, fields))
            except CanonicalValueError as exc:
                digest = f"invalid: {exc}"
            out[canonical.get(store_id, store_id)] = digest
        return out

    def rows(self, entity: Entity) -> list[dict[str, Any]]:
        """Every live record mapped to canonical column names, as stored (for contract checks)."""
        return [c.row for c in raw_changes(entity, self.id_map, list(self.client.list(twenty_object(entity))))]

    def compare_with_hub(self, entity: Entity, hub_records: dict[str, tuple[int, dict[str, Any] | None]]
                         ) -> ConsistencyReport:
        return compare_inventory(self, entity, hub_records)

    def check(self) -> Health:
        try:
            for e in ENTITIES:
                next(self.client.pages(twenty_object(e), fields=["id"]), None)
        except TwentyAuthError as exc:
            return Health(False, f"credentials rejected: {exc}")
        except TwentyError as exc:
            return Health(False, f"Twenty unavailable: {type(exc).__name__}: {exc}")
        return Health(True, "connected", self.client.metrics())

    def api_stats(self) -> dict[str, Any]:
        return self.client.metrics()
