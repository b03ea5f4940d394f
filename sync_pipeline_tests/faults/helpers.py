"""What every fault test shares: the four stores, one sync over them, and the one closing assertion that
compares every store with the hub's golden records field by field."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from sync_pipeline import pipeline
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.canonical import CanonicalValueError, canonical_record
from sync_pipeline.model.entities import ENTITIES, Entity
from sync_pipeline.stores.base import IdMap, SameIds, Source, Store, Target, translate_references
from sync_pipeline.stores.bigquery import BigQueryStore
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.twenty.store import TwentyStore
from sync_pipeline_tests.helpers import SETTINGS


@dataclass
class FourStores:
    """The hub and the four stores on the test session's real servers."""

    hub: Hub
    local_db: PostgresStore
    supabase: PostgresStore
    twenty: TwentyStore
    bigquery: BigQueryStore

    @property
    def all(self) -> list[Any]:
        return [self.local_db, self.supabase, self.twenty, self.bigquery]


def sync_all(hub: Hub, stores: Sequence[Store], run_id: str = "fault-run",
             on_step: Callable[[str], None] | None = None) -> dict[tuple[str, ...], Any]:
    """One run of the sync job without Dagster: per entity, capture every source, resolve, publish to every
    target; returns the stats by (step, store, entity). `on_step` hears each step's name before it runs."""
    def step(name: str) -> None:
        if on_step is not None:
            on_step(name)

    stats: dict[tuple[str, ...], Any] = {}
    for e in ENTITIES:
        for s in stores:
            if isinstance(s, Source):
                step(f"capture {s.name} {e.name}")
                stats[("capture", s.name, e.name)] = pipeline.capture(hub, s, e, run_id, SETTINGS)
        step(f"resolve {e.name}")
        stats[("resolve", e.name)] = pipeline.resolve(hub, e, run_id, SETTINGS)
        for s in stores:
            if isinstance(s, Target):
                step(f"publish {s.name} {e.name}")
                stats[("publish", s.name, e.name)] = pipeline.publish(hub, s, e, run_id, SETTINGS)
    return stats


@dataclass
class _Reasons:
    """Open quarantine rows and open errors, by (store, record id): what explains a store differing."""

    quarantined: dict[tuple[str, str], str] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    step_errors: list[str] = field(default_factory=list)

    def reason(self, store: str, record_id: str) -> str | None:
        return self.quarantined.get((store, record_id)) or self.errors.get((store, record_id))


def _open_reasons(hub: Hub, entity: Entity, id_maps: Mapping[str, IdMap]) -> _Reasons:
    out = _Reasons()
    with hub.connect() as conn:
        for r in conn.execute("""select store, record_id, reason from sync.quarantine
                                 where entity = %s and resolved_at is null and record_id is not null""",
                              (entity.name,)):
            assert r["reason"], f"quarantined {entity.name} {r['record_id']} in {r['store']} has no reason"
            # quarantine keeps the store's own id; the comparison speaks canonical ids
            id_map = id_maps.get(r["store"], SameIds())
            canonical = id_map.to_canonical(entity.name, [r["record_id"]]).get(r["record_id"], r["record_id"])
            for key in {(r["store"], r["record_id"]), (r["store"], canonical)}:
                out.quarantined[key] = r["reason"]
        for r in conn.execute("""select store, record_id, record_ids, operation, message from sync.errors
                                 where entity = %s and resolved_at is null""", (entity.name,)):
            assert r["message"], f"error of {r['store']} {entity.name} {r['record_id']} has no message"
            ids = [r["record_id"]] if r["record_id"] else list(r["record_ids"] or [])
            if not ids:
                out.step_errors.append(f"{r['store']} {entity.name} {r['operation']}: {r['message']}")
            for record_id in ids:
                out.errors[(r["store"], record_id)] = r["message"]
    return out


def _store_records(store: Any, entity: Entity) -> tuple[list[str], dict[str, dict[str, Any] | str]]:
    """The store's rows as (every canonical id, with repeats; canonical id -> canonical fields, or why they
    cannot be read)."""
    id_map: IdMap = getattr(store, "id_map", SameIds())
    rows = [dict(r) for r in store.rows(entity)]
    if not isinstance(store, TwentyStore):  # Twenty's rows come with their references translated
        translate_references(entity, rows, id_map, to_store=False)
    store_ids = [str(r["id"]) for r in rows]
    canonical_ids = id_map.to_canonical(entity.name, store_ids)
    ids: list[str] = []
    records: dict[str, dict[str, Any] | str] = {}
    for store_id, row in zip(store_ids, rows):
        record_id = canonical_ids.get(store_id, store_id)
        ids.append(record_id)
        try:
            records[record_id] = canonical_record(entity, row)
        except CanonicalValueError as exc:
            records[record_id] = f"unreadable: {exc}"
    return ids, records


def assert_stores_match_hub(hub: Hub, stores: Sequence[Any], held: Mapping[tuple[str, str], str] = {}
                            ) -> None:
    """Every store against the hub's golden records, field by field, for every entity:

    - lost: a live golden record a store lacks; or a store's record the hub has no live record for;
    - duplicated: two rows of one store for one record, or two live golden records with one natural key;
    - silently changed: a field whose value in a store differs from the golden record;
    - an error left open for a record its store holds at the golden version (bookkeeping that lies).

    Each is allowed only where an open quarantine row or an open error of that store names the record with
    its reason, and those are exactly the `held` records ((store, record id) -> a part of the reason).
    """
    problems: list[str] = []
    explained: dict[tuple[str, str], str] = {}
    id_maps = {s.name: s.id_map for s in stores if hasattr(s, "id_map")}
    names = {s.name for s in stores}
    for e in ENTITIES:
        golden = {i: data for i, (_, data) in hub.golden_snapshot(e.name).items() if data is not None}
        reasons = _open_reasons(hub, e, id_maps)
        problems += [f"open step error: {m}" for m in reasons.step_errors if m.split()[0] in names]
        if e.natural_key:
            keys = Counter(d.get(e.natural_key) for d in golden.values() if d.get(e.natural_key))
            problems += [f"hub: two live {e.name} share {e.natural_key} {k!r}" for k, n in keys.items() if n > 1]
        for s in stores:
            ids, records = _store_records(s, e)
            problems += [f"{s.name}: {n} rows for {e.name} {i}" for i, n in Counter(ids).items() if n > 1]

            def differs(record_id: str, what: str) -> None:
                reason = reasons.reason(s.name, record_id)
                if reason is None:
                    problems.append(f"{s.name} {e.name} {record_id}: {what}, and nothing says why")
                else:
                    explained[(s.name, record_id)] = reason

            for record_id, data in golden.items():
                found = records.get(record_id)
                if found is None:
                    differs(record_id, "lost (live in the hub, absent from the store)")
                elif isinstance(found, str):
                    differs(record_id, found)
                else:
                    changed = {f: (found.get(f), data.get(f)) for f in e.field_names if found.get(f) != data.get(f)}
                    if changed:
                        differs(record_id, f"changed (store, hub): {changed}")
                    elif (s.name, record_id) in reasons.errors:
                        problems.append(f"{s.name} {e.name} {record_id}: held at the golden version, yet its "
                                        f"error stays open: {reasons.errors[(s.name, record_id)]}")
            for record_id in records.keys() - golden.keys():
                differs(record_id, "in the store, not live in the hub")
    for key, part in held.items():
        if key not in explained:
            problems.append(f"{key} should be held ({part!r}) but matches the hub or has no open reason")
        elif part not in explained[key]:
            problems.append(f"{key} is held for {explained[key]!r}, not for {part!r}")
    problems += [f"{key} held ({reason}) but not expected to be" for key, reason in explained.items()
                 if key not in held]
    assert not problems, "stores differ from the hub:\n" + "\n".join(problems)
