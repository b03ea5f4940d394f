"""The values that flow between stores, the hub and the resolver."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from sync_pipeline.model.canonical import content_hash


class Op(str, Enum):
    UPSERT = "upsert"
    DELETE = "delete"


@dataclass(frozen=True)
class Change:
    """One captured change of one record in one store, in canonical form.

    `base_version` is the hub version the store had last seen of this record (0 if never): equal to
    the golden version means a fast-forward, older means the record changed elsewhere meanwhile.
    `event_key` identifies the change in its source so that a replay is recognised.
    """

    store: str
    entity: str
    record_id: str
    op: Op
    data: dict[str, Any] | None
    base_version: int
    modified_at: datetime
    event_key: str
    store_record_id: str | None = None

    @property
    def content_hash(self) -> str:
        return content_hash(self.data if self.op is Op.UPSERT else None)


@dataclass(frozen=True)
class GoldenRecord:
    """The hub's current truth about one record; a tombstone when `deleted`."""

    entity: str
    record_id: str
    version: int
    data: dict[str, Any] | None
    deleted: bool
    content_hash: str
    origin_store: str
    origin_modified_at: datetime


@dataclass
class ApplyResult:
    """What a store did with a batch of golden records, by record id."""

    applied: list[str] = field(default_factory=list)  # written (inserted, updated or deleted)
    stale: list[str] = field(default_factory=list)  # the store already had this version or a newer one
    failed: dict[str, BaseException] = field(default_factory=dict)  # record id -> why it was not written
    store_ids: dict[str, str] = field(default_factory=dict)  # record id -> the store's own id


class ConcurrentEdit(Exception):
    """A record edited in the target since the hub last read it: not overwritten, but taken in as a change
    (`reread`, the record as re-read from the store: a `stores.base.RawChange`) and retried next run."""

    def __init__(self, store: str, reread: Any) -> None:
        super().__init__(f"edited in {store.capitalize()} since the hub last read it; taken in as a change")
        self.reread = reread


@dataclass(frozen=True)
class StoreState:
    """What the hub knows one store holds of one record. `NEVER_HELD` for a store it has no state for."""

    seen_version: int  # the latest version the store holds or has sent us
    seen_hash: str | None
    written_version: int  # the latest version we wrote into the store
    store_record_id: str | None = None  # the store's own id for the record, where the hub knows it


NEVER_HELD = StoreState(seen_version=0, seen_hash=None, written_version=0)


@dataclass
class CapturedChange:
    """A validated change ready for the inbox."""

    record_id: str | None  # None: the hub resolves it from the store's id (id-mapping stores)
    store_record_id: str
    op: Op
    data: dict[str, Any] | None
    modified_at: datetime
    event_key: str
    base_version: int | None = None


@dataclass
class QuarantinedRecord:
    """A record that failed its contract, kept out of the hub with the reasons."""

    store_record_id: str | None
    event_key: str
    reason: str
    failures: list[dict[str, Any]]
    payload: dict[str, Any]


@dataclass
class ResolveStats:
    """Counts of what resolving the inbox did, by outcome."""

    read: int = 0
    applied: int = 0
    echoes: int = 0
    conflicts: int = 0
    duplicates: int = 0  # already in the processed-event ledger
    quarantined: int = 0
    noops: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: ResolveStats) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
