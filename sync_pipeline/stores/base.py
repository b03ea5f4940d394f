"""What a store is to the sync: the records it exchanges, the interfaces it may implement (capabilities)
and the spec it declares in its own package."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Collection, Mapping, Protocol, Sequence, runtime_checkable

from sync_pipeline.config import SyncConfig, active_config
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

    def holding(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        """Record id -> the store's id, for those of the records the hub knows the store to hold (under their
        canonical id or one of its own): a missing one is not there yet."""
        ...

    def live(self, entity: str, record_ids: Sequence[str]) -> set[str]:
        """Those of the records the hub has not deleted, seen or not (a reference to a deleted one can never
        be linked)."""
        ...

    def last_read(self, entity: str, record_ids: Sequence[str]) -> dict[str, tuple[str | None, datetime | None]]:
        """Record id -> (content hash the store holds as far as the hub knows, newest modification time
        captured from the store), for the records the hub has state for in the store."""
        ...

    def held(self, entity: str) -> dict[str, str]:
        """Store id -> canonical id of every record the hub knows the store to hold alive, but for those with
        a change or hint of the store still waiting in the inbox (what a listing of the store must show)."""
        ...

    def read_as_gone(self, entity: str, store_ids: Sequence[str]) -> set[str]:
        """Those of the store's ids whose newest change captured from the store is a delete: the hub has read
        that the store no longer has them."""
        ...


class SameIds:
    """The id map of a store whose ids are all canonical (a store on its own, as in a benchmark)."""

    def to_store(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def to_canonical(self, entity: str, store_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def holding(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        return {i: i for i in record_ids}  # a store on its own holds what it refers to

    def live(self, entity: str, record_ids: Sequence[str]) -> set[str]:
        return set(record_ids)

    def last_read(self, entity: str, record_ids: Sequence[str]) -> dict[str, tuple[str | None, datetime | None]]:
        return {}

    def held(self, entity: str) -> dict[str, str]:
        return {}  # without a hub nothing is known to be held, so nothing can be found missing

    def read_as_gone(self, entity: str, store_ids: Sequence[str]) -> set[str]:
        return set()


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


def live_data(record: GoldenRecord) -> dict[str, Any]:
    """The data of a live golden record: only a tombstone has none."""
    if record.data is None:
        raise ValueError(f"golden record {record.entity} {record.record_id} v{record.version} is live "
                         "but has no data")
    return record.data


class StoreUnavailable(RuntimeError):
    """The store cannot be reached: its steps fail at once instead of each waiting out its own retries."""


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


def live_hashes(entity: Entity, hub_records: dict[str, tuple[int, dict[str, Any] | None]],
                fields: Collection[str] | None = None) -> dict[str, str]:
    """Record id -> content hash of the live records of a hub snapshot (`Hub.golden_snapshot`), over `fields`
    (those a store carries, as its inventory hashes them), every field by default. A field added to the
    entity after a record was written is null in it, as every store lists it."""
    names = entity.field_names if fields is None else [f for f in entity.field_names if f in fields]
    return {i: content_hash({f: data.get(f) for f in names})
            for i, (_, data) in hub_records.items() if data is not None}


def store_config(store: Store) -> SyncConfig:
    """The configuration a store runs with: its own where it was built with one (a Postgres store), else the
    active one."""
    config = getattr(store, "config", None)
    return config if isinstance(config, SyncConfig) else active_config()


def carried_fields(store: Store, entity: Entity) -> tuple[str, ...] | None:
    """The fields of the entity the store reads and writes, in the entity's order; None when it does not
    carry the entity. A field it does not carry is neither written nor compared there."""
    config = store_config(store)
    return config.carried_fields(store.name, entity.name) if config.carries(store.name, entity.name) else None


def compare_inventory(store: ReconcilableStore, entity: Entity,
                      hub_records: dict[str, tuple[int, dict[str, Any] | None]]) -> ConsistencyReport:
    """`compare_with_hub` for stores whose inventory is read in full: by id, in Python, over the fields the
    store carries (nothing to compare where it carries not the entity)."""
    fields = carried_fields(store, entity)
    if fields is None:
        return compare_hashes(entity.name, {}, {})
    return compare_hashes(entity.name, store.inventory(entity), live_hashes(entity, hub_records, fields))


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
    """What every store does, whatever else it can: say who it is, report its health and API use."""

    name: str

    def check(self) -> Health: ...

    def api_stats(self) -> dict[str, Any]:
        """Counters of the store's API use for metadata (requests, 429s, seconds throttled); {} if none."""
        ...


# Capabilities: optional behaviour as interfaces, checked with `isinstance` on a store or `issubclass` on
# its class (so the Dagster side can build assets and checks before any store is connected). They hold
# methods only: `issubclass` refuses protocols with data members.


@runtime_checkable
class Source(Protocol):
    """A store the sync captures changes from."""

    def capture(self, entity: Entity, cursor: dict[str, Any] | None, limit: int) -> CaptureBatch: ...

    def capture_status(self, entity: Entity, cursor: dict[str, Any] | None) -> dict[str, Any]:
        """`ready` (capture is installed and may run) plus how far the cursor lags behind the store."""
        ...

    def refresh(self, entity: Entity, store_ids: Sequence[str]) -> dict[str, RawChange]:
        """Re-read records as they are now (webhook hints, reconciliation), keyed by store id; a record that
        is gone comes back as a delete."""
        ...


@runtime_checkable
class WebhookSource(Source, Protocol):
    """A source that also sends hints (webhooks) naming records that changed, kept in the hub's inbox."""

    def read_hints(self, entity: Entity, hints: Sequence[Mapping[str, Any]]) -> dict[str, RawChange]:
        """The records the hints (inbox rows: `event_key`, `store_record_id`, `payload`, `received_at`) name,
        re-read now, by event key: a webhook says something changed, the record says what. A record gone
        comes back as a delete, dated by the hint's event where the hint reports that deletion."""
        ...


@runtime_checkable
class ListsIds(Protocol):
    """A store whose ids can be listed page by page (a Postgres store: keyset pages on the primary key), so an
    adoption reads what it holds in bounded memory."""

    def store_ids(self, entity: Entity, after: str | None, limit: int) -> list[str]:
        """Up to `limit` ids after `after` (from the first when None), in the store's key order."""
        ...


@runtime_checkable
class ChangeLogSource(Source, Protocol):
    """A source with a change log of its own (Postgres CDC): a sensor watches its head, and the rows the hub
    has committed can be dropped."""

    def latest_change(self, entity: Entity) -> str | None:
        """The newest change-log position of the entity, cheap enough for a sensor tick."""
        ...

    def prune(self, entity: Entity, cursor: dict[str, Any]) -> int:
        """Drop change-log rows at or before a cursor the hub has committed."""
        ...


@runtime_checkable
class Target(Protocol):
    """A store the sync publishes golden records to."""

    def apply(self, entity: Entity, records: Sequence[GoldenRecord]) -> ApplyResult: ...


@runtime_checkable
class Reconcilable(Protocol):
    """A store whose whole content can be read and compared with the hub (reconciliation, safety checks)."""

    def rows(self, entity: Entity) -> list[dict[str, Any]]:
        """Every row with the canonical columns, as stored."""
        ...

    def inventory(self, entity: Entity) -> dict[str, str]:
        """Record id -> canonical content hash of every live record."""
        ...

    def compare_with_hub(self, entity: Entity, hub_records: dict[str, tuple[int, dict[str, Any] | None]]
                         ) -> ConsistencyReport:
        """Row counts and content checksums against the hub's records (id -> (version, data or None))."""
        ...


@runtime_checkable
class Installable(Protocol):
    """A store the sync must prepare before it runs (change capture, warehouse tables). Idempotent."""

    def install(self) -> None: ...


# For annotations: a store together with a capability.
class SourceStore(Store, Source, Protocol): ...


class TargetStore(Store, Target, Protocol): ...


class ReconcilableStore(Store, Reconcilable, Protocol): ...


@dataclass(frozen=True)
class StoreSpec:
    """A store as the rest of the sync knows it, declared in the store's own package.

    `key` names its Dagster resource, asset key prefix and group. What it can do comes from the
    capabilities its class implements, so a spec cannot claim what the code does not do."""

    key: str
    label: str
    kinds: frozenset[str]
    store_class: type
    # Tiebreak rank when two edits carry the same modification time: lower wins. Sources only.
    priority: int | None = None
    # Error class names that mean "the store's rate limit refused us" (checked by the rate-limit check).
    rate_limited_errors: tuple[str, ...] = ()
    # Records per apply call; None: the sync's batch size.
    publish_batch_size: int | None = None
    # The warehouse that also receives the sync's own run log.
    hosts_sync_log: bool = False

    def can(self, capability: type) -> bool:
        return issubclass(self.store_class, capability)

    @property
    def captures(self) -> bool:
        return self.can(Source)

    @property
    def publishes(self) -> bool:
        return self.can(Target)

    @property
    def has_change_log(self) -> bool:
        return self.can(ChangeLogSource)
