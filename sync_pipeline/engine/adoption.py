"""Adopting a store that already holds records: its records are matched by natural key to the records the hub
already has, so that the first sync links them instead of duplicating them, and for each matched record one
side's values win. Pure functions over what the store lists and what the hub holds.

Which side wins for a matched record whose values differ is a per-store policy (`adopt_wins`): the most
recent modification (the default), this store, or the other stores (what the hub holds). A record that
cannot be linked is said why: it has no natural key value (taken in as a new record), or its value is
shared by several records of the store or of the hub (kept out: linking either would be a guess).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal

AdoptWins = Literal["most_recent", "this_store", "others"]
DEFAULT_ADOPT_WINS: AdoptWins = "most_recent"


class AdoptionRefused(RuntimeError):
    """Adopting a store's records would overwrite more records than the threshold allows: nothing was
    written, and the store is neither captured nor published to until the operator confirms."""


class Winner(str, Enum):
    STORE = "this_store"  # the store's values go to the hub and every other store
    OTHERS = "others"  # the hub's values overwrite the store's record
    SAME = "same"  # nothing differs: nothing is written


@dataclass(frozen=True)
class StoreRecord:
    """A record the store holds, in canonical form, with its own id and when it was last modified."""

    store_record_id: str
    data: dict[str, Any]
    modified_at: datetime | None


@dataclass(frozen=True)
class HubRecord:
    """A live golden record carrying a natural key value the store's records carry too. `linked_store_id`
    is the id the store already holds it under, if the hub knows one."""

    record_id: str
    version: int
    content_hash: str
    data: dict[str, Any]
    modified_at: datetime
    linked_store_id: str | None = None


@dataclass(frozen=True)
class Link:
    store_record_id: str
    record_id: str
    version: int  # the golden version the store's record was matched to
    content_hash: str  # of that version
    key: str  # the natural key value both carry
    winner: Winner
    differing_fields: tuple[str, ...]

    @property
    def overwrites(self) -> bool:
        """Whether linking overwrites a record: the store's (others win) or the hub's and every other store's
        (the store wins)."""
        return self.winner is not Winner.SAME


@dataclass(frozen=True)
class Unmatched:
    store_record_id: str
    reason: str
    taken_in: bool  # True: taken in as a new record; False: kept out (quarantined) until fixed at its source


@dataclass
class AdoptionReport:
    """What adopting one entity of one store does: links, new records, and what could not be matched."""

    store: str
    entity: str
    policy: AdoptWins
    links: list[Link] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # store ids of records no other store has: taken in as new
    unmatched: list[Unmatched] = field(default_factory=list)

    @property
    def overwrites(self) -> int:
        return sum(1 for link in self.links if link.overwrites)

    def add(self, other: AdoptionReport) -> None:
        """Take in the report of another part of the same store's records (adopted page by page)."""
        self.links += other.links
        self.new += other.new
        self.unmatched += other.unmatched

    def counts(self) -> dict[str, int]:
        return {"linked": len(self.links), "new": len(self.new),
                "unmatched": sum(1 for u in self.unmatched if not u.taken_in),
                "overwrites": self.overwrites,
                "store_wins": sum(1 for link in self.links if link.winner is Winner.STORE),
                "others_win": sum(1 for link in self.links if link.winner is Winner.OTHERS)}


def winner(policy: AdoptWins, store_modified_at: datetime | None, hub_modified_at: datetime) -> Winner:
    """Whose values win for a matched record whose values differ. Under `most_recent` the later modification
    wins; a tie or an unknown store time keeps what the other stores hold (one store rewritten, not all)."""
    if policy == "this_store":
        return Winner.STORE
    if policy == "others":
        return Winner.OTHERS
    if store_modified_at is not None and store_modified_at > hub_modified_at:
        return Winner.STORE
    return Winner.OTHERS


def differing_fields(store_data: Mapping[str, Any], hub_data: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields the store carries whose values differ from the hub's (a field it does not carry is no
    difference)."""
    return tuple(sorted(name for name, value in store_data.items() if hub_data.get(name) != value))


def match(store: str, entity: str, natural_key: str | None, records: Sequence[StoreRecord],
          hub_records: Mapping[str, Sequence[HubRecord]], policy: AdoptWins = DEFAULT_ADOPT_WINS
          ) -> AdoptionReport:
    """Match a store's records to the hub's by natural key value (`hub_records`: value -> the live golden
    records carrying it). Each record is linked, taken in as new, or left unmatched with its reason."""
    report = AdoptionReport(store, entity, policy)
    if natural_key is None:
        report.new = [r.store_record_id for r in records]
        reason = f"{entity} have no natural key: taken in as a new record"
        report.unmatched = [Unmatched(r.store_record_id, reason, taken_in=True) for r in records]
        return report
    by_key: dict[str, list[StoreRecord]] = defaultdict(list)
    for r in records:
        value = r.data.get(natural_key)
        if value is None:
            report.new.append(r.store_record_id)
            reason = f"no {natural_key}: taken in as a new record"
            report.unmatched.append(Unmatched(r.store_record_id, reason, taken_in=True))
        else:
            by_key[str(value)].append(r)
    for key, sharing in by_key.items():
        candidates = hub_records.get(key, ())
        if len(sharing) > 1:
            ids = ", ".join(r.store_record_id for r in sharing)
            reason = (f"{natural_key} {key!r} is shared by {len(sharing)} records of {store} ({ids}): "
                      "cannot tell which to link")
            report.unmatched += [Unmatched(r.store_record_id, reason, taken_in=False) for r in sharing]
            continue
        [record] = sharing
        if not candidates:
            report.new.append(record.store_record_id)
        elif len(candidates) > 1:
            ids = ", ".join(c.record_id for c in candidates)
            reason = (f"{natural_key} {key!r} is shared by {len(candidates)} hub records ({ids}): "
                      "cannot tell which to link")
            report.unmatched.append(Unmatched(record.store_record_id, reason, taken_in=False))
        elif candidates[0].linked_store_id not in (None, record.store_record_id):
            c = candidates[0]
            reason = (f"{natural_key} {key!r} belongs to record {c.record_id}, already linked to {store} "
                      f"record {c.linked_store_id}")
            report.unmatched.append(Unmatched(record.store_record_id, reason, taken_in=False))
        else:
            c = candidates[0]
            differing = differing_fields(record.data, c.data)
            side = winner(policy, record.modified_at, c.modified_at) if differing else Winner.SAME
            report.links.append(Link(record.store_record_id, c.record_id, c.version, c.content_hash, key,
                                     side, differing))
    return report


@dataclass(frozen=True)
class Overwrites:
    """How many records adopting one entity of one store would overwrite, counted before anything is taken
    in (without holding the links: a large store's are adopted page by page)."""

    store: str
    entity: str
    overwrites: int


def key_digest(value: Any) -> int:
    """A natural key value, as `match` groups it (its text), in 8 bytes: adopting a large store keeps one per
    record to find the values several of its records share, rather than the values themselves."""
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "big")


def repeated(digests: Iterable[int]) -> set[int]:
    """The digests that occur more than once."""
    ordered = sorted(digests)
    return {a for a, b in zip(ordered, ordered[1:]) if a == b}


def refusal(reports: Sequence[AdoptionReport | Overwrites], threshold: int) -> str | None:
    """Why adopting must wait for the operator's confirmation, or None: more records would be overwritten
    than the threshold allows."""
    overwrites = sum(r.overwrites for r in reports)
    if overwrites <= threshold:
        return None
    parts = ", ".join(f"{r.overwrites} {r.entity} in {r.store}" for r in reports if r.overwrites)
    return (f"adopting would overwrite {overwrites} records ({parts}), more than the threshold of "
            f"{threshold}: review `sync-pipeline plan`, then confirm (run config `confirm: true` on the "
            "sync_settings resource, or `sync-pipeline sync --confirm`)")
