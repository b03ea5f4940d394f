"""Conflict resolution: version-based detection, three-way merge, last write wins with a deterministic
tiebreak.

Pure functions over canonical records. A captured change carries the hub version its store had last seen
(its base). Base equal to the golden version is a fast-forward. An older base means the record changed
elsewhere meanwhile: fields changed on one side only are merged; fields changed on both sides (or any
delete) go to the later modification time, ties broken by configured store priority, then content hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sync_pipeline.engine.records import Change, GoldenRecord, Op
from sync_pipeline.model.canonical import content_hash, format_timestamp

MERGED_ORIGIN = "merged"


class Outcome(str, Enum):
    APPLIED = "applied"  # fast-forward: the hub takes the change
    ECHO = "echo"  # the hub already holds this content (our own write coming back, or a no-op)
    CONFLICT = "conflict"  # concurrent edits; resolved, logged, hub may or may not change
    NOOP = "noop"  # a delete of a record the hub never had


@dataclass(frozen=True)
class Conflict:
    entity: str
    record_id: str
    golden_version: int
    base_version: int
    incoming_store: str
    golden_store: str
    winner_store: str
    resolution: str  # "incoming_wins", "golden_wins" or "merged"
    differing_fields: list[str]
    golden_side: dict[str, Any]
    incoming_side: dict[str, Any]


@dataclass(frozen=True)
class Resolution:
    outcome: Outcome
    golden: GoldenRecord | None  # the new golden record when the hub changes, else None
    conflict: Conflict | None = None

    def store_holds_result(self, change: Change, current: GoldenRecord | None) -> bool:
        """Whether the change's store now holds exactly what the hub holds (so it needs no publish)."""
        result = self.golden or current
        return result is not None and result.content_hash == change.content_hash


def _rank_key(modified_at: datetime, store: str, digest: str,
              priority: Sequence[str]) -> tuple[datetime, int, str]:
    # Earlier in the priority list wins ties on time; the content hash makes the order total.
    rank = -priority.index(store) if store in priority else -len(priority)
    return (modified_at, rank, digest)


def _changed_fields(base: dict[str, Any] | None, side: dict[str, Any]) -> set[str]:
    if base is None:
        return set(side)
    return {name for name, value in side.items() if base.get(name) != value}


def _side(store: str, version: int, data: dict[str, Any] | None, modified_at: datetime) -> dict[str, Any]:
    return {"store": store, "version": version, "deleted": data is None, "data": data,
            "modified_at": format_timestamp(modified_at)}


def _next(current: GoldenRecord | None, change: Change, data: dict[str, Any] | None,
          store: str, modified_at: datetime) -> GoldenRecord:
    return GoldenRecord(
        entity=change.entity,
        record_id=change.record_id,
        version=(current.version if current else 0) + 1,
        data=data,
        deleted=data is None,
        content_hash=content_hash(data),
        origin_store=store,
        origin_modified_at=modified_at,
    )


def resolve(current: GoldenRecord | None, change: Change, base: dict[str, Any] | None,
            priority: Sequence[str] = ()) -> Resolution:
    """Resolve one change against the hub's golden record.

    `base` is the golden data at the change's base version when the hub still knows it (for the
    three-way merge); None means unknown or deleted, and every differing field counts as contested.
    """
    incoming = change.data if change.op is Op.UPSERT else None
    if current is None:
        if incoming is None:
            return Resolution(Outcome.NOOP, None)
        return Resolution(Outcome.APPLIED, _next(None, change, incoming, change.store, change.modified_at))
    if change.content_hash == current.content_hash:
        return Resolution(Outcome.ECHO, None)
    if change.base_version >= current.version:
        return Resolution(Outcome.APPLIED, _next(current, change, incoming, change.store, change.modified_at))

    incoming_key = _rank_key(change.modified_at, change.store, change.content_hash, priority)
    golden_key = _rank_key(current.origin_modified_at, current.origin_store, current.content_hash, priority)
    incoming_wins = incoming_key > golden_key
    golden_data = current.data

    if incoming is not None and golden_data is not None:
        ours = _changed_fields(base, incoming)
        theirs = _changed_fields(base, golden_data)
        contested = ours & theirs
        merged = dict(golden_data)
        for name in ours - theirs:
            merged[name] = incoming[name]
        if incoming_wins:
            for name in contested:
                merged[name] = incoming[name]
        differing = sorted(n for n in golden_data if golden_data.get(n) != incoming.get(n))
        if merged == golden_data:
            resolution, result = "golden_wins", None
        elif merged == incoming:
            resolution = "incoming_wins"
            result = _next(current, change, merged, change.store, change.modified_at)
        else:
            resolution = "merged"
            winner_time = max(change.modified_at, current.origin_modified_at)
            # Neither store holds this content yet, so it has no single origin.
            result = _next(current, change, merged, MERGED_ORIGIN, winner_time)
    else:
        # A delete on either side: no field-level merge, the later write takes the whole record.
        differing = sorted(set(golden_data or {}) | set(incoming or {}))
        if incoming_wins:
            resolution = "incoming_wins"
            result = _next(current, change, incoming, change.store, change.modified_at)
        else:
            resolution, result = "golden_wins", None

    winner = {"incoming_wins": change.store, "golden_wins": current.origin_store}.get(resolution, "merged")
    conflict = Conflict(
        entity=change.entity,
        record_id=change.record_id,
        golden_version=current.version,
        base_version=change.base_version,
        incoming_store=change.store,
        golden_store=current.origin_store,
        winner_store=winner,
        resolution=resolution,
        differing_fields=differing,
        golden_side=_side(current.origin_store, current.version, golden_data, current.origin_modified_at),
        incoming_side=_side(change.store, change.base_version, incoming, change.modified_at),
    )
    return Resolution(Outcome.CONFLICT, result, conflict)


