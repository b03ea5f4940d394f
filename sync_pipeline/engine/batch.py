"""A batch of the inbox resolved in memory: what the hub holds of the batch's records is read at once
(`HubView`), each change is decided in inbox order against that view, and the view takes each decision before
the next change is decided (the same record changed twice, a record created and then linked by its natural
key). The hub writes the result back with one statement per table.

Pure: identification (ids, natural keys), the policy around the resolver (`engine.policy`) and the resolver
itself, over plain values.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from sync_pipeline.engine.policy import claimed_base, held_after, is_echo, overwritten, own_base
from sync_pipeline.engine.records import (
    NEVER_HELD,
    Change,
    GoldenRecord,
    Op,
    QuarantinedRecord,
    ResolveStats,
    StoreState,
)
from sync_pipeline.engine.resolver import Conflict, Outcome, Resolution, resolve

_COUNTERS = {Outcome.APPLIED: "applied", Outcome.ECHO: "echoes", Outcome.CONFLICT: "conflicts",
             Outcome.NOOP: "noops"}
DUPLICATE, QUARANTINED = "duplicate", "quarantined"


@dataclass(frozen=True)
class InboxChange:
    """A captured change as the inbox holds it, before its record is identified. `row_version` is the
    version the store's row carried when edited (None for a store without row versions)."""

    inbox_id: int
    store: str
    event_key: str
    record_id: str | None
    store_record_id: str | None
    op: Op
    data: dict[str, Any] | None
    row_version: int | None
    modified_at: datetime


def key_text(value: Any) -> str:
    """A natural key value as the hub compares it (its JSON text, as `data->>key` reads it)."""
    return value if isinstance(value, str) else str(value)


@lru_cache(maxsize=16_384)  # a change's id is asked for at each step of its batch's read and decision
def canonical_id(value: str, store: str | None = None) -> str:
    """A record id as the hub stores it: a uuid in its canonical spelling; a store's id that is no uuid (a
    bigint identity, a text key), given the store, a uuid derived from both, the same on every replay."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sync-pipeline:{store}:{value}")) if store else value


@dataclass
class HubView:
    """What the hub holds of the records one batch touches. `history` holds, per record, the versions a
    three-way merge or the own-base walk of this batch may need (version -> (origin store, data))."""

    natural_key: str | None
    golden: dict[str, GoldenRecord] = field(default_factory=dict)
    states: dict[tuple[str, str], StoreState] = field(default_factory=dict)  # (record id, store)
    history: dict[str, dict[int, tuple[str, dict[str, Any] | None]]] = field(default_factory=dict)
    key_owners: dict[str, set[str]] = field(default_factory=dict)  # natural key text -> live record ids

    def __post_init__(self) -> None:
        self._by_store_id = {(store, s.store_record_id): rid for (rid, store), s in self.states.items()
                             if s.store_record_id is not None}

    def record_id_of(self, store: str, store_record_id: str | None) -> str | None:
        return self._by_store_id.get((store, store_record_id)) if store_record_id is not None else None

    def state(self, record_id: str, store: str) -> StoreState:
        return self.states.get((record_id, store), NEVER_HELD)

    def key_owner(self, value: Any, record_id: str | None) -> str | None:
        """Another live record that already has this natural key value."""
        if value is None:
            return None
        others = sorted(self.key_owners.get(key_text(value), set()) - {record_id})
        return others[0] if others else None

    def later_origins(self, record_id: str, version: int) -> list[tuple[int, str]]:
        versions = self.history.get(record_id, {})
        return [(v, versions[v][0]) for v in sorted(versions) if v > version]

    def snapshot(self, record_id: str, version: int) -> dict[str, Any] | None:
        held = self.history.get(record_id, {}).get(version)
        return held[1] if held else None

    def take(self, g: GoldenRecord) -> None:
        """A new golden version, seen by the changes after it."""
        previous = self.golden.get(g.record_id)
        if self.natural_key and previous and previous.data and not previous.deleted:
            old_key = previous.data.get(self.natural_key)
            if old_key is not None:
                self.key_owners.get(key_text(old_key), set()).discard(g.record_id)
        if self.natural_key and g.data and not g.deleted and g.data.get(self.natural_key) is not None:
            self.key_owners.setdefault(key_text(g.data[self.natural_key]), set()).add(g.record_id)
        self.golden[g.record_id] = g
        self.history.setdefault(g.record_id, {})[g.version] = (g.origin_store, g.data)

    def hold(self, record_id: str, store: str, version: int, digest: str | None,
             store_record_id: str | None) -> StoreState:
        """What the store holds after its own change was resolved; its id is kept when the change has none."""
        before = self.state(record_id, store)
        after = replace(before, seen_version=version, seen_hash=digest,
                        store_record_id=store_record_id or before.store_record_id)
        self.states[(record_id, store)] = after
        if after.store_record_id is not None:
            self._by_store_id[(store, after.store_record_id)] = record_id
        return after


@dataclass
class Reach:
    """What resolving a batch may read or write of the hub, by every path a change finds its record: record
    ids, natural key values (as the hub compares them) and store ids (store, the store's id). A batch read
    while another is being written must reach none of what that one reaches: it would not see that batch's
    writes (a record it creates, a key it takes or frees, a store id it maps)."""

    record_ids: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    store_ids: set[tuple[str, str]] = field(default_factory=set)

    def meets(self, other: Reach) -> bool:
        return bool(self.record_ids & other.record_ids or self.keys & other.keys
                     or self.store_ids & other.store_ids)

    def __ior__(self, other: Reach) -> Reach:
        self.record_ids |= other.record_ids
        self.keys |= other.keys
        self.store_ids |= other.store_ids
        return self


def changes_reach(changes: Iterable[InboxChange], natural_key: str | None) -> Reach:
    """Where a batch's changes find their records before the hub is read: their ids (a new record takes its
    store's id), their store ids and the natural key values they carry."""
    reach = Reach()
    for c in changes:
        if c.record_id:
            reach.record_ids.add(c.record_id)
        if c.store_record_id:
            reach.record_ids.add(canonical_id(c.store_record_id, c.store))
            reach.store_ids.add((c.store, c.store_record_id))
        if natural_key and c.data and c.data.get(natural_key) is not None:
            reach.keys.add(key_text(c.data[natural_key]))
    return reach


def view_reach(view: HubView) -> Reach:
    """What a batch's view holds: its records, the natural key values they hold and those looked up, and the
    stores' ids of them. Taken once read (the keys the records had) and once decided (those they took)."""
    keys = set(view.key_owners)
    if view.natural_key:
        keys |= {key_text(g.data[view.natural_key]) for g in view.golden.values()
                 if g.data and g.data.get(view.natural_key) is not None}
    return Reach(set(view.golden) | {record_id for record_id, _ in view.states}, keys,
                 {(store, s.store_record_id) for (_, store), s in view.states.items() if s.store_record_id})


@dataclass(frozen=True)
class Decided:
    """What became of one inbox row: its outcome and, where it reached a record, that record's id and golden
    version after it."""

    change: InboxChange
    outcome: str  # an `Outcome` value, or "duplicate" / "quarantined"
    record_id: str | None = None
    version: int | None = None
    detail: str | None = None
    quarantined: QuarantinedRecord | None = None


@dataclass
class BatchResolution:
    """Everything a batch changes in the hub, for the writes."""

    decided: list[Decided] = field(default_factory=list)
    versions: list[GoldenRecord] = field(default_factory=list)  # every new golden version, in order
    conflicts: list[tuple[Conflict, int]] = field(default_factory=list)  # with the version after each
    states: dict[tuple[str, str], StoreState] = field(default_factory=dict)  # (record id, store) changed
    stats: ResolveStats = field(default_factory=ResolveStats)

    @property
    def golden(self) -> dict[str, GoldenRecord]:
        """The latest new version of each record the batch changed."""
        return {g.record_id: g for g in self.versions}


def history_floor(change: InboxChange, record_id: str, view: HubView) -> int:
    """The oldest version of the record a change may need from the history (its claimed base)."""
    return claimed_base(change.row_version, view.state(record_id, change.store))


def _identify(change: InboxChange, view: HubView) -> tuple[str, str | None]:
    """The canonical id of the changed record, and the other record that already owns its natural key if
    the change cannot take it. A record the hub does not know yet, with the natural key of one it does, is
    that record under another id: the two are linked."""
    store, store_record_id = change.store, change.store_record_id
    record_id = change.record_id or view.record_id_of(store, store_record_id)
    if change.op is Op.UPSERT and view.natural_key and change.data is not None:
        owner = view.key_owner(change.data.get(view.natural_key), record_id)
        if owner:
            linked = view.state(owner, store).store_record_id
            if record_id is None and linked in (None, store_record_id):
                return owner, None
            return record_id or canonical_id(store_record_id or "", store), owner
    return record_id or canonical_id(store_record_id or "", store), None  # a new record keeps the store's id


def _taken_key(change: InboxChange, natural_key: str, owner: str) -> QuarantinedRecord:
    value = (change.data or {}).get(natural_key)
    return QuarantinedRecord(change.store_record_id, change.event_key,
                             f"{natural_key} {value!r} already belongs to record {owner}",
                             [{"check": "unique natural key", "column": natural_key}], change.data or {})


def _resolve_change(entity: str, change: InboxChange, record_id: str, view: HubView, priority: Sequence[str],
                    out: BatchResolution) -> tuple[Resolution, int | None]:
    """Resolve one change against its golden record; the view and `out` take what follows."""
    store = change.store
    current = view.golden.get(record_id)
    state = view.state(record_id, store)
    base_version = claimed_base(change.row_version, state)
    if current and base_version < current.version:
        base_version = own_base(base_version, store, view.later_origins(record_id, base_version))
    # A store that carries only some fields changes only those: the others stay as the hub holds them.
    data = change.data
    if current and current.data and data is not None:
        data = {**current.data, **data}
    canonical = Change(store=store, entity=entity, record_id=record_id, op=change.op, data=data,
                       base_version=base_version, modified_at=change.modified_at, event_key=change.event_key,
                       store_record_id=change.store_record_id)
    if is_echo(current, canonical, change.row_version, state):
        resolution = Resolution(Outcome.ECHO, None)
    else:
        base = (view.snapshot(record_id, base_version)
                if current and base_version and base_version < current.version else None)
        resolution = resolve(current, canonical, base, priority)
    result = resolution.golden
    if result is not None:
        view.take(result)
        out.versions.append(result)
    if resolution.conflict is not None:
        out.conflicts.append((resolution.conflict, result.version if result else resolution.conflict.golden_version))
    if resolution.outcome is not Outcome.NOOP:
        version, digest = held_after(resolution, canonical, current, state, overwritten(change.row_version, state))
        out.states[(record_id, store)] = view.hold(record_id, store, version, digest, change.store_record_id)
    final = result or current
    return resolution, final.version if final else None


def resolve_batch(entity: str, changes: Iterable[InboxChange], claimed: set[tuple[str, str]], view: HubView,
                  priority: Sequence[str]) -> BatchResolution:
    """Decide a batch of inbox rows in order: once per event (`claimed`: the (store, event key) pairs new
    to the processed-event ledger; the others are replays), then once per record identity (natural keys
    stay unique: a change that would take another record's key is quarantined)."""
    out = BatchResolution()
    stats = out.stats
    for change in changes:
        stats.read += 1
        if (change.store, change.event_key) not in claimed:
            stats.duplicates += 1
            out.decided.append(Decided(change, DUPLICATE, change.record_id))
            continue
        record_id, key_owner = _identify(change, view)
        if key_owner:
            stats.quarantined += 1
            assert view.natural_key is not None  # an owner is only found by its natural key
            out.decided.append(Decided(change, QUARANTINED, quarantined=_taken_key(change, view.natural_key,
                                                                                    key_owner)))
            continue
        resolution, version = _resolve_change(entity, change, record_id, view, priority, out)
        counter = _COUNTERS[resolution.outcome]
        setattr(stats, counter, getattr(stats, counter) + 1)
        out.decided.append(Decided(change, resolution.outcome.value, record_id, version,
                                   resolution.conflict.resolution if resolution.conflict else None))
    return out
