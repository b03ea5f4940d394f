"""An edit made in Twenty while a sync holds its publish there open (the stand-in's latency knob) is not
overwritten: it is taken in as a change, merged with the hub's edit as a conflict at the next run, and
never recorded as an echo (issue 14, item 5)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from sync_pipeline_tests.faults.helpers import FourStores, assert_stores_match_hub, sync_all
from sync_pipeline_tests.helpers import insert_person, people

# Every Twenty request of the publish is held this long: the edit lands while the pre-write re-read waits.
HOLD_SECONDS = 3.0


def test_an_edit_in_twenty_while_the_publish_is_held_open_survives_and_is_merged(
        stores: FourStores, topology, twenty_standin, twenty_client):
    t = stores
    with psycopg.connect(topology.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Katherine", email="kj@nasa.gov", city="Hampton")
    sync_all(t.hub, t.all)
    sync_all(t.hub, t.all)  # Twenty's echo of our write is read: the hub has seen what Twenty holds
    assert twenty_client.get("people", pid)["city"] == "Hampton"

    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("update people set city = 'Houston' where id = %s", (pid,))
    publishing = threading.Event()

    held_before = twenty_standin.stats()["held_by_latency"]

    def hold_the_twenty_publish(step: str) -> None:
        if step == "publish twenty people":
            twenty_standin.set_faults(latency_seconds=HOLD_SECONDS)
            publishing.set()

    def publish_request_held() -> bool:
        return twenty_standin.stats()["held_by_latency"] > held_before

    run: dict[str, Any] = {}
    sync = threading.Thread(target=lambda: run.update(stats=sync_all(t.hub, t.all, "run-1", hold_the_twenty_publish)))
    sync.start()
    try:
        assert publishing.wait(timeout=120)
        # The publish's first request (the pre-write re-read) is held by the stand-in, however loaded the
        # machine is, before the knob goes back and the edit is made.
        deadline = time.monotonic() + 120
        while not publish_request_held():
            assert time.monotonic() < deadline, "the publish sent no request to Twenty"
            time.sleep(0.05)
        twenty_standin.set_faults(latency_seconds=0)  # (requests already held keep their wait)
        twenty_client.update("people", pid, {"jobTitle": "Mathematician"})  # someone edits in Twenty now
    finally:
        sync.join(timeout=120)
        twenty_standin.set_faults(latency_seconds=0)
    publish = run["stats"][("publish", "twenty", "people")]
    assert publish.seconds >= HOLD_SECONDS  # the edit was made while the publish was held open

    after = twenty_client.get("people", pid)
    assert (after["jobTitle"], after["city"]) == ("Mathematician", "Hampton")  # not overwritten
    assert publish.errors == 1 and "edited in Twenty since the hub last read it" in publish.error_messages[0]

    # The next run takes the Twenty edit in as a conflict with Supabase's and merges both everywhere.
    nxt = sync_all(t.hub, t.all, "run-2")
    assert nxt[("resolve", "people")].echoes == 0 and nxt[("resolve", "people")].conflicts == 1
    for store in t.all:
        assert [(p["city"], p["job_title"]) for p in people(store)] == [("Houston", "Mathematician")], store.name
    quiet = sync_all(t.hub, t.all, "run-3")  # and it settles: Twenty's echo of the merged write is no new edit
    assert quiet[("resolve", "people")].applied == 0 and quiet[("publish", "twenty", "people")].read == 0
    assert_stores_match_hub(t.hub, t.all)
