"""Twenty CRM as a store: capture by polling `updatedAt` (and by re-reading webhook hints), publish by
batch upsert. Twenty has ids of its own: an `IdMap` from the hub translates them both ways.

Section numbers (§) refer to docs/twenty-api.md."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from sync_pipeline.engine.records import ApplyResult, ConcurrentEdit, GoldenRecord
from sync_pipeline.model.canonical import CanonicalValueError, canonical_record, content_hash, parse_timestamp
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
from sync_pipeline.stores.twenty.mapping import MappingError, to_canonical, to_twenty, twenty_object

STORE_NAME = "twenty"
# Webhooks name objects in the singular (§9.1).
ENTITY_BY_OBJECT_SINGULAR = {"company": "companies", "person": "people", "opportunity": "opportunities"}
# §4.4: a filter that mentions deletedAt lists soft-deleted rows too.
_WITH_DELETED = "or(deletedAt[is]:NULL,deletedAt[is]:NOT_NULL)"
_EPOCH = "1970-01-01T00:00:00.000Z"
# Ids per `id[in]` filter when re-reading records: keeps the request URL short.
_IDS_PER_FILTER = 50


class PendingReference(Exception):
    """A record that cannot be written before the record it references."""


def _iso_ms(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _by_store_id(changes: list[RawChange]) -> dict[str, RawChange]:
    """Changes read from Twenty by Twenty's id, which `TwentyStore._raw_changes` sets on each."""
    out = {}
    for c in changes:
        if c.store_record_id is None:
            raise ValueError(f"change {c.event_key} read from Twenty has no Twenty id")
        out[c.store_record_id] = c
    return out


class TwentyStore:
    name = STORE_NAME

    def __init__(self, client: TwentyClient, id_map: IdMap, overlap: timedelta = timedelta(minutes=5)) -> None:
        self.client = client
        self.id_map = id_map
        self.overlap = overlap

    # -- capture -----------------------------------------------------------------------------------

    def capture(self, entity: Entity, cursor: dict[str, Any] | None, limit: int) -> CaptureBatch:
        """Records changed since the watermark minus an overlap window, soft deletes included.

        `updatedAt` is the writing transaction's start time, so a late commit can carry a time behind
        rows already read (§10.5): the overlap re-reads that window and the inbox drops what it has
        seen, keyed by (id, updatedAt). One walk keeps its filter and pages with `starting_after`, so a
        crash resumes the walk; only a finished walk moves the watermark."""
        cursor = dict(cursor or {"watermark": _EPOCH})
        walk_from = cursor.get("walk_from") or _iso_ms(parse_timestamp(cursor["watermark"]) - self.overlap)
        query = f'and(updatedAt[gte]:"{walk_from}",{_WITH_DELETED})'
        records: list[dict[str, Any]] = []
        page_after = cursor.get("page_after")
        more = False
        for page in self.client.pages(twenty_object(entity), filter=query, starting_after=page_after):
            records += page.records
            page_after = page.end_cursor
            more = page.has_next_page
            if len(records) >= limit:
                break
        changes = self._raw_changes(entity, records)
        newest = max([cursor["watermark"], *(r["updatedAt"] for r in records if r.get("updatedAt"))],
                     key=parse_timestamp)
        polled_at = _iso_ms(datetime.now(timezone.utc))
        if more:
            next_cursor = {"watermark": cursor["watermark"], "walk_from": walk_from, "page_after": page_after,
                           "walk_max": max(newest, cursor.get("walk_max", newest), key=parse_timestamp),
                           "polled_at": polled_at}
        else:
            next_cursor = {"watermark": max(newest, cursor.get("walk_max", newest), key=parse_timestamp),
                           "polled_at": polled_at}
        return CaptureBatch(changes=changes, cursor=next_cursor, more=more)

    def refresh(self, entity: Entity, store_ids: Sequence[str]) -> dict[str, RawChange]:
        """Re-read records named by webhook hints: a webhook says something changed, the record says what.
        Records gone from every list (destroyed) come back as deletes."""
        found: dict[str, dict[str, Any]] = {}
        step = _IDS_PER_FILTER
        for chunk in (store_ids[i:i + step] for i in range(0, len(store_ids), step)):
            ids = ",".join(f'"{i}"' for i in chunk)
            for record in self.client.list(twenty_object(entity), filter=f"and(id[in]:[{ids}],{_WITH_DELETED})"):
                found[record["id"]] = record
        changes = _by_store_id(self._raw_changes(entity, list(found.values())))
        now = datetime.now(timezone.utc)
        for store_id in store_ids:
            if store_id not in changes:
                changes[store_id] = RawChange(record_id=store_id, deleted=True, row={"id": store_id},
                                              modified_at=now, event_key=f"destroyed:{store_id}",
                                              store_record_id=store_id)
        return changes

    def _raw_changes(self, entity: Entity, records: list[dict[str, Any]]) -> list[RawChange]:
        rows, errors = [], {}
        for record in records:
            try:
                rows.append((record, to_canonical(entity, record)))
            except MappingError as exc:
                rows.append((record, {"id": record.get("id")}))
                errors[record.get("id")] = f"cannot be mapped from Twenty: {exc}"
        translate_references(entity, [row for _, row in rows], self.id_map, to_store=False)
        return [RawChange(record_id=record["id"], deleted=record.get("deletedAt") is not None, row=row,
                          modified_at=record.get("updatedAt"),
                          event_key=f"poll:{record['id']}:{record.get('updatedAt')}",
                          store_record_id=record["id"], error=errors.get(record["id"]))
                for record, row in rows]

    def capture_status(self, entity: Entity, cursor: dict[str, Any] | None) -> dict[str, Any]:
        """Polling is as current as its last poll: a quiet CRM leaves the watermark behind, rightly."""
        if not cursor or "polled_at" not in cursor:
            return {"ready": True, "never_captured": True}
        since = datetime.now(timezone.utc) - parse_timestamp(cursor["polled_at"])
        return {"ready": True, "seconds_behind": round(since.total_seconds(), 1), "watermark": cursor["watermark"]}

    # -- publish -----------------------------------------------------------------------------------

    def apply(self, entity: Entity, records: Sequence[GoldenRecord]) -> ApplyResult:
        """Upsert live records in batches (matching by id and unique fields, so a record created elsewhere
        is linked to an existing Twenty record rather than duplicated); soft-delete tombstones."""
        result = ApplyResult()
        known = self.id_map.to_store(entity.name, [g.record_id for g in records])
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
            in_twenty.setdefault(target, {}).update(self.id_map.to_store(target, values))
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
        # taken in as a change instead, and the record waits for the next run.
        edited = self._edited_since_read(entity, sent, known)
        for record_id, change in edited.items():
            result.failed[record_id] = ConcurrentEdit(STORE_NAME, change)
        kept = [i for i, g in enumerate(sent) if g.record_id not in edited]
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
                           ) -> dict[str, RawChange]:
        """Record id -> the record as re-read now, for those Twenty holds in a content that is neither what
        the hub last knew it to hold nor the version about to be written, with an `updatedAt` past every
        change captured from Twenty for it (a content that lost a conflict was read, and is overwritten)."""
        if not records:
            return {}
        last_read = self.id_map.last_read(entity.name, [g.record_id for g in records])
        twenty_ids = {known.get(g.record_id, g.record_id): g for g in records}
        found: list[dict[str, Any]] = []
        ids = list(twenty_ids)
        for chunk in (ids[i:i + _IDS_PER_FILTER] for i in range(0, len(ids), _IDS_PER_FILTER)):
            quoted = ",".join(f'"{i}"' for i in chunk)
            found += self.client.list(twenty_object(entity), filter=f"and(id[in]:[{quoted}],{_WITH_DELETED})")
        edited = {}
        for change in self._raw_changes(entity, found):
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
        return edited

    # -- reads -------------------------------------------------------------------------------------

    def inventory(self, entity: Entity) -> dict[str, str]:
        records = list(self.client.list(twenty_object(entity)))
        by_store_id = _by_store_id(self._raw_changes(entity, records))
        canonical = self.id_map.to_canonical(entity.name, list(by_store_id))
        out = {}
        for store_id, change in by_store_id.items():
            try:
                digest = content_hash(canonical_record(entity, change.row))
            except CanonicalValueError as exc:
                digest = f"invalid: {exc}"
            out[canonical.get(store_id, store_id)] = digest
        return out

    def rows(self, entity: Entity) -> list[dict[str, Any]]:
        """Every live record mapped to canonical column names, as stored (for contract checks)."""
        return [c.row for c in self._raw_changes(entity, list(self.client.list(twenty_object(entity))))]

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
