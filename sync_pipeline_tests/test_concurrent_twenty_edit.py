"""An edit made in Twenty during a sync (after Twenty was polled, before the publish) is not overwritten:
it is taken in as a change and merged with the hub's edit at the next run (issue 14, item 5)."""

from __future__ import annotations

import psycopg

from sync_pipeline import pipeline
from sync_pipeline.model.entities import ENTITIES, entity
from sync_pipeline_tests.helpers import SETTINGS, insert_person, people, sync_once

PEOPLE = entity("people")


def test_an_edit_in_twenty_between_poll_and_publish_survives_and_is_merged(topology, twenty_store, twenty_client):
    t = topology
    stores = [twenty_store, t.supabase, t.local_db]
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Katherine", email="kj@nasa.gov", city="Hampton")
    sync_once(t.hub, stores)
    sync_once(t.hub, stores)  # Twenty's echo of our write is read: the hub has seen what Twenty holds
    assert twenty_client.get("people", pid)["city"] == "Hampton"

    # A run starts: every store is polled and resolved, Supabase's city edit among them ...
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update people set city = 'Houston' where id = %s", (pid,))
    for e in ENTITIES:
        for s in stores:
            pipeline.capture(t.hub, s, e, "run-1", SETTINGS)
        pipeline.resolve(t.hub, e, "run-1", SETTINGS)
    # ... then someone edits the person in Twenty, before the run publishes there.
    twenty_client.update("people", pid, {"jobTitle": "Mathematician"})
    stats = pipeline.publish(t.hub, twenty_store, PEOPLE, "run-1", SETTINGS)

    after = twenty_client.get("people", pid)
    assert (after["jobTitle"], after["city"]) == ("Mathematician", "Hampton")  # not overwritten
    assert stats.errors == 1 and "edited in Twenty since the hub last read it" in stats.error_messages[0]
    with t.hub.connect() as conn:
        pending = conn.execute("""select data from sync.inbox where store = 'twenty' and kind = 'change'
                                  and applied_at is null""").fetchall()
    assert [r["data"]["job_title"] for r in pending] == ["Mathematician"]

    # The next run takes the Twenty edit in as a conflict with Supabase's and merges both everywhere.
    nxt = sync_once(t.hub, stores)
    assert nxt[("resolve", "people")].echoes == 0 and nxt[("resolve", "people")].conflicts == 1
    for rows in (people(t.supabase), people(t.local_db), people(twenty_store)):
        assert [(p["city"], p["job_title"]) for p in rows] == [("Houston", "Mathematician")]
    with t.hub.connect() as conn:
        golden = conn.execute("select data from sync.golden where record_id = %s", (pid,)).fetchone()["data"]
        open_errors = conn.execute("select count(*) as n from sync.errors where resolved_at is null").fetchone()
    assert (golden["city"], golden["job_title"]) == ("Houston", "Mathematician")
    assert open_errors["n"] == 0
    # and it settles: Twenty's echo of the merged write is no new edit
    quiet = sync_once(t.hub, stores)
    assert quiet[("resolve", "people")].applied == 0 and quiet[("publish", "twenty", "people")].read == 0
