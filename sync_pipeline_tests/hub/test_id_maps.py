"""The hub's id maps against a real hub: a record a store holds under its canonical id is read as that id, one
held under an id of its own is translated, and a page of lookups reads the small index of the latter, however
many records the stores hold under their canonical ids; whether a store holds a record at all is still known."""

from __future__ import annotations

import json
import uuid

import psycopg

from sync_pipeline.engine.records import StoreState
from sync_pipeline.hub.golden import set_states
from sync_pipeline.hub.id_maps import STORE_IDS
from sync_pipeline.hub.resolve import MAPPED_IDS


def _plan_indexes(dsn: str, query: str, params: tuple) -> set[str]:
    """The indexes the planner reads for the query when it may not scan the table (a test hub is small enough
    for a scan to win on cost: the question is which index serves the lookup)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("set enable_seqscan = off")
        plan = conn.execute("explain (format json) " + query, params).fetchone()[0]
    text = json.dumps(plan)
    found = {name for name in ("record_state_own_ids", "record_state_own_store_ids", "record_state_pkey",
                              "record_state_store_id", "record_state_store_version") if f'"{name}"' in text}
    assert found, f"the plan reads no index of the record states: {text}"
    return found


def test_only_records_held_under_an_id_of_their_own_are_looked_up(topology):
    hub = topology.hub
    same = [str(uuid.uuid4()) for _ in range(500)]  # held in Supabase under their canonical ids
    linked, linked_as = str(uuid.uuid4()), str(uuid.uuid4())  # linked by natural key to another uuid
    numbered = str(uuid.uuid4())  # a bigint table's row
    states = {(rid, "supabase"): StoreState(1, "h", 1, rid) for rid in same}
    states[(linked, "supabase")] = StoreState(1, "h", 1, linked_as)
    states[(numbered, "local_db")] = StoreState(1, "h", 1, "42")
    with hub.connect() as conn, conn.transaction():
        set_states(conn, "people", states, new=states.keys())
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("analyze sync.record_state")

    # Canonical -> store: only the records held under another id; the callers read a missing one as itself.
    assert hub.store_ids_for("supabase", "people", [*same[:3], linked]) == {linked: linked_as}
    assert hub.store_ids_for("local_db", "people", [numbered, same[0]]) == {numbered: "42"}
    assert hub.id_map("supabase").to_store("people", same[:2]) == {}
    # Whether the store holds a record at all (Twenty's references wait for their record to reach it).
    unknown = str(uuid.uuid4())
    assert hub.id_map("supabase").holding("people", [same[0], linked, unknown]) == {same[0]: same[0],
                                                                                   linked: linked_as}
    # Store -> canonical still knows every record the store holds.
    assert hub.record_ids_for("supabase", "people", [same[0], linked_as]) == {same[0]: same[0], linked_as: linked}

    own = {"record_state_own_ids", "record_state_own_store_ids"}
    assert _plan_indexes(topology.local_dsn, STORE_IDS, ("supabase", "people", same[:100])) <= own
    assert _plan_indexes(topology.local_dsn, MAPPED_IDS, (["supabase"] * 100, same[:100], "people")) <= own
