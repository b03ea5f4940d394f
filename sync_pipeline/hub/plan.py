"""What a planned run would do, read from the hub inside the plan's rolled-back transaction: what each target
would be sent, and what the run's resolve recorded (conflicts, quarantined records, links by natural key)."""

from __future__ import annotations

from typing import Any

from sync_pipeline.hub.connection import HubConnection, one
from sync_pipeline.model.canonical import content_hash

_TOMBSTONE_HASH = content_hash(None)


def publish_forecast(hub: HubConnection, store: str, entity: str) -> dict[str, int]:
    """What publishing would write to the store: the golden records it has not seen, as inserts (records it
    does not hold), updates (records it holds) and deletes (tombstones of records it holds). A tombstone of a
    record it never held writes nothing."""
    with hub.connect() as conn:
        return dict(one(conn.execute(
            """with unseen as (
                 select g.deleted,
                        coalesce(s.store_record_id is not null or s.seen_version > 0, false)
                          and s.seen_hash is distinct from %s as held
                 from sync.golden g
                 left join sync.record_state s
                   on s.entity = g.entity and s.record_id = g.record_id and s.store = %s
                 where g.entity = %s and (s.seen_version is null or s.seen_version < g.version))
               select count(*) filter (where not deleted and not held) as insert,
                      count(*) filter (where not deleted and held) as update,
                      count(*) filter (where deleted and held) as delete
               from unseen""", (_TOMBSTONE_HASH, store, entity))))


def run_conflicts(hub: HubConnection, run_id: str, entity: str) -> list[dict[str, Any]]:
    with hub.connect() as conn:
        return conn.execute(
            """select record_id::text as record_id, incoming_store, golden_store, winner_store, resolution,
                      array_to_string(differing_fields, ', ') as fields
               from sync.conflicts where run_id = %s and entity = %s order by id""",
            (run_id, entity)).fetchall()


def run_quarantined(hub: HubConnection, run_id: str, entity: str) -> list[dict[str, Any]]:
    """Records the run kept out of the hub (at capture or resolve), with the reason."""
    with hub.connect() as conn:
        return conn.execute(
            """select store, record_id, stage, detail as reason from sync.record_outcomes
               where run_id = %s and entity = %s and outcome = 'quarantined' order by id""",
            (run_id, entity)).fetchall()


def run_links(hub: HubConnection, run_id: str, entity: str) -> list[dict[str, Any]]:
    """Records of a store the run linked by natural key to a record the hub had: on adoption (with whose
    values win), or when resolving a record new to the hub whose natural key another record carries."""
    with hub.connect() as conn:
        return conn.execute(
            """select o.store, o.record_id, o.detail from sync.record_outcomes o
               where o.run_id = %s and o.entity = %s and o.stage = 'capture' and o.outcome = 'linked'
               union all
               select o.store, o.record_id,
                      o.store || ' record ' || i.store_record_id || ' linked by natural key; ' || o.outcome
               from sync.record_outcomes o
               join sync.inbox i on i.store = o.store and i.event_key = o.event_key
               where o.run_id = %s and o.entity = %s and o.stage = 'resolve'
                 and o.outcome in ('echo', 'conflict')
                 and i.record_id is null and o.record_id <> i.store_record_id""",
            (run_id, entity, run_id, entity)).fetchall()
