"""What the UI shows an operator: conflicts with both sides' values and the winner, and the open quarantine
listed on every capture until the record is fixed at its source."""

from __future__ import annotations

import dagster as dg
import psycopg

from sync_pipeline.defs.assets import conflict_rows
from sync_pipeline_tests.helpers import insert_person, sync_once


def test_a_conflict_shows_both_values_and_the_winner(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Ada", city="London")
    sync_once(t.hub, [t.supabase, t.local_db])
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update people set city = 'Paris' where id = %s", (pid,))
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("update people set city = 'Berlin' where id = %s", (pid,))
    sync_once(t.hub, [t.supabase, t.local_db])
    rows = conflict_rows(t.hub.recent_conflicts("people"))
    assert [(r["field"], r["golden"], r["incoming"], r["winner"]) for r in rows] == [
        ("city", "'Paris' (supabase)", "'Berlin' (local_db)", "local_db")]


def test_the_open_quarantine_stays_listed_on_every_capture(four_stores, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Bad", email="not-an-email")
    job = four_stores.defs.resolve_job_def("sync_job")
    with dg.DagsterInstance.ephemeral() as instance:
        for _ in range(2):  # the second run sees nothing new, and still lists it
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            md = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
                  for e in result.get_asset_materialization_events()}
            listed = md["supabase/people_changes"]["open_quarantine"].value
            assert "not-an-email" in listed and "e-mail" in listed
