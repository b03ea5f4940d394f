"""The interface every store implements, so that one asset factory serves them all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from sync_pipeline.engine.records import ApplyResult, GoldenRecord
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


class SameIds:
    """The id map of a store whose ids are all canonical (a store on its own, as in a benchmark)."""

    def to_store(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def to_canonical(self, entity: str, store_ids: Sequence[str]) -> dict[str, str]:
        return {}


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
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Health:
    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


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

    def api_stats(self) -> dict[str, Any]:
        """Counters of the store's API use for metadata (requests, 429s, seconds throttled); {} if none."""
        ...
