"""Property: any sequence of edits and deletes spread over both Postgres stores, synced in any order of
partial runs, ends (after one full run) with both stores and the hub identical, and stays quiet after.

The edits are all of people (with no references), so the full runs are of people only: the steps of the
other entities, always empty here, would each open their connections and find nothing to do."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipeline import pipeline
from sync_pipeline.model.entities import entity
from sync_pipeline.stores.base import live_hashes
from sync_pipeline_tests.helpers import SETTINGS, sync_once

PEOPLE = entity("people")
IDS = [str(uuid.UUID(int=i + 1)) for i in range(3)]
STORES = ("supabase", "local_db")

edit = st.tuples(st.just("edit"), st.sampled_from(STORES), st.integers(0, 2),
                 st.sampled_from(["first_name", "city", "job_title"]), st.sampled_from(["a", "b", "c"]))
delete = st.tuples(st.just("delete"), st.sampled_from(STORES), st.integers(0, 2))
partial_sync = st.tuples(st.just("sync"), st.lists(st.sampled_from(STORES), unique=True),
                         st.lists(st.sampled_from(STORES), unique=True))
steps = st.lists(st.one_of(edit, edit, delete, partial_sync), min_size=1, max_size=14)


def _reset(t) -> None:
    for dsn in (t.supabase_dsn, t.local_dsn):
        with psycopg.connect(dsn) as conn:
            conn.execute('truncate public.people, public.companies, public.opportunities, sync_cdc.change_log, '
                         'sync_cdc."public.people.versions", sync_cdc."public.companies.versions", '
                         'sync_cdc."public.opportunities.versions"')
    with t.hub.connect() as conn:
        conn.execute("""truncate sync.golden, sync.golden_history, sync.record_state, sync.inbox,
                        sync.processed_events, sync.cursors, sync.conflicts, sync.errors, sync.quarantine,
                        sync.runs, sync.record_outcomes""")


def _apply_step(t, step) -> None:
    stores = {"supabase": t.supabase, "local_db": t.local_db}
    dsns = {"supabase": t.supabase_dsn, "local_db": t.local_dsn}
    kind = step[0]
    if kind == "edit":
        _, store, i, column, value = step
        row = {"id": IDS[i], "first_name": "x", "email": f"p{i}@example.com", column: value}
        with psycopg.connect(dsns[store]) as conn:
            conn.execute(
                f"""insert into public.people ({", ".join(row)}) values ({", ".join(["%s"] * len(row))})
                    on conflict (id) do update set {column} = excluded.{column}""", list(row.values()))
    elif kind == "delete":
        _, store, i = step
        with psycopg.connect(dsns[store]) as conn:
            conn.execute("delete from public.people where id = %s", (IDS[i],))
    else:
        _, capture_from, publish_to = step
        for name in capture_from:
            pipeline.capture(t.hub, stores[name], PEOPLE, "prop", SETTINGS)
        pipeline.resolve(t.hub, PEOPLE, "prop", SETTINGS)
        for name in publish_to:
            pipeline.publish(t.hub, stores[name], PEOPLE, "prop", SETTINGS)


@pytest.mark.timeout(600)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_any_interleaving_converges(topology, steps):
    t = topology
    _reset(t)
    for step in steps:
        _apply_step(t, step)
    sync_once(t.hub, [t.supabase, t.local_db], entities=[PEOPLE])
    supabase_rows = t.supabase.rows(PEOPLE)
    assert supabase_rows == t.local_db.rows(PEOPLE)
    golden = {rid: data for rid, (_, data) in t.hub.golden_snapshot("people").items() if data is not None}
    assert t.supabase.inventory(PEOPLE) == live_hashes(PEOPLE, t.hub.golden_snapshot("people"))
    assert {str(r["id"]) for r in supabase_rows} == set(golden)
    quiet = sync_once(t.hub, [t.supabase, t.local_db], entities=[PEOPLE])
    assert all(s.read == 0 for s in quiet.values()), "a further run must find nothing to do"
