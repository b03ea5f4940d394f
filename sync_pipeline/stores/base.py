"""The interface every store implements, so that one asset factory serves them all."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from sync_pipeline.engine.records import ApplyResult, GoldenRecord
from sync_pipeline.model.canonical import content_hash
from sync_pipeline.model.entities import Entity


@dataclass
class RawChange:
    """A change as read from a store, mapped to canonical column names but not yet validated."""

    record_id: str
    deleted: bool
    row: dict[str, Any]  # canonical column names -> store values (id included)
    modified_at: Any
    event_key: str
    store_record_id: str | None = None
    base_version: int | None = None  # the hub version the row carried when edited, where the store keeps it
    error: str | None = None  # the record could not even be mapped to canonical columns


class IdMap(Protocol):
    """Canonical ids <-> a store's own ids, kept in the hub. A missing id means the same id."""

    def to_store(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]: ...

    def to_canonical(self, entity: str, store_ids: Sequence[str]) -> dict[str, str]: ...

    def live(self, entity: str, record_ids: Sequence[str]) -> set[str]:
        """Those of the records the hub holds alive (a reference to any other can never be linked)."""
        ...


class SameIds:
    """The id map of a store whose ids are all canonical (a store on its own, as in a benchmark)."""

    def to_store(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def to_canonical(self, entity: str, store_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def live(self, entity: str, record_ids: Sequence[str]) -> set[str]:
        return set(record_ids)


def translate_references(entity: Entity, rows: Sequence[dict[str, Any]], id_map: IdMap, to_store: bool) -> None:
    """Rewrite, in place, the reference columns of canonical rows between canonical and store ids."""
    for column, target in entity.references.items():
        ids = sorted({str(r[column]) for r in rows if r.get(column)})
        if not ids:
            continue
        known = id_map.to_store(target, ids) if to_store else id_map.to_canonical(target, ids)
        for r in rows:
            if r.get(column):
                r[column] = known.get(str(r[column]), str(r[column]))


@dataclass
class CaptureBatch:
    changes: list[RawChange]
    cursor: dict[str, Any]  # the position after these changes, to store in the hub
    more: bool = False  # the store had more changes than one batch holds


@dataclass
class Health:
    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConsistencyReport:
    """Row counts and content checksums of one entity table against the hub, with the ids that differ."""

    entity: str
    hub_rows: int
    store_rows: int
    hub_checksum: str
    store_checksum: str
    missing: list[str] = field(default_factory=list)  # live in the hub, absent in BigQuery
    extra: list[str] = field(default_factory=list)  # in BigQuery, absent or deleted in the hub
    mismatched: list[str] = field(default_factory=list)  # in both, content or version differs
    duplicated: list[str] = field(default_factory=list)  # more than one BigQuery row for the id

    @property
    def consistent(self) -> bool:
        return (
            self.hub_rows == self.store_rows
            and self.hub_checksum == self.store_checksum
            and not (self.missing or self.extra or self.mismatched or self.duplicated)
        )


def live_hashes(hub_records: dict[str, tuple[int, dict[str, Any] | None]]) -> dict[str, str]:
    """Record id -> content hash of the live records of a hub snapshot (`Hub.golden_snapshot`)."""
    return {i: content_hash(data) for i, (_, data) in hub_records.items() if data is not None}


def compare_inventory(store: Store, entity: Entity, hub_records: dict[str, tuple[int, dict[str, Any] | None]]
                      ) -> ConsistencyReport:
    """`compare_with_hub` for stores whose inventory is read in full: by id, in Python."""
    return compare_hashes(entity.name, store.inventory(entity), live_hashes(hub_records))


def compare_hashes(entity: str, store_hashes: dict[str, str], hub_hashes: dict[str, str]) -> ConsistencyReport:
    """Compare a store's content hashes with the hub's live records, by id."""
    def checksum(hashes: dict[str, str]) -> str:
        total = 0
        for record_id, digest in hashes.items():
            total ^= int(hashlib.sha256(f"{record_id}:{digest}".encode()).hexdigest()[:15], 16)
        return f"{total:015x}"

    common = store_hashes.keys() & hub_hashes.keys()
    return ConsistencyReport(
        entity=entity, hub_rows=len(hub_hashes), store_rows=len(store_hashes),
        hub_checksum=checksum(hub_hashes), store_checksum=checksum(store_hashes),
        missing=sorted(hub_hashes.keys() - store_hashes.keys()),
        extra=sorted(store_hashes.keys() - hub_hashes.keys()),
        mismatched=sorted(i for i in common if store_hashes[i] != hub_hashes[i]),
    )


class Store(Protocol):
    name: str
    # Records per apply call; None: the sync's batch size. Bulk stores take more: a BigQuery run is
    # one load job and one MERGE per table, whatever the number of rows.
    publish_batch_size: int | None

    def capture(self, entity: Entity, cursor: dict[str, Any] | None, limit: int) -> CaptureBatch: ...

    def refresh(self, entity: Entity, store_ids: Sequence[str]) -> dict[str, RawChange]:
        """Re-read records named by event hints (webhooks), keyed by store id; only stores with events."""
        ...

    def capture_status(self, entity: Entity, cursor: dict[str, Any] | None) -> dict[str, Any]:
        """`ready` (capture is installed and may run) plus how far the cursor lags behind the store."""
        ...

    def apply(self, entity: Entity, records: list[GoldenRecord]) -> ApplyResult: ...

    def inventory(self, entity: Entity) -> dict[str, str]:
        """Record id -> canonical content hash of every live record, for reconciliation and checks."""
        ...

    def check(self) -> Health: ...

    def compare_with_hub(self, entity: Entity, hub_records: dict[str, tuple[int, dict[str, Any] | None]]
                         ) -> ConsistencyReport:
        """Row counts and content checksums against the hub's records (id -> (version, data or None))."""
        ...

    def api_stats(self) -> dict[str, Any]:
        """Counters of the store's API use for metadata (requests, 429s, seconds throttled); {} if none."""
        ...
