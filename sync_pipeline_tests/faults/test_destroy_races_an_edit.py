"""A Twenty destroy racing an edit made elsewhere, both during a sync (issue 14, item 6): last write wins by
when each happened. A destroy made while the sync holds its publish to Twenty open beats the earlier edit the
publish carries (the record is not recreated); an edit made after a destroy wins, and the record is
recreated in Twenty. The destroy reaches the sync through its signed webhook, as in production."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import psycopg

from sync_pipeline_tests.faults.helpers import FourStores, assert_stores_match_hub, sync_all
from sync_pipeline_tests.helpers import insert_person, people

HOLD_SECONDS = 3.0  # every Twenty request of the held publish waits this long at the stand-in


def _in_every_store(stores: FourStores, topology) -> str:
    with psycopg.connect(topology.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Edsger", email="ewd@example.com", job_title="Professor")
    sync_all(stores.hub, stores.all)
    sync_all(stores.hub, stores.all)  # Twenty's echo read: the hub knows what Twenty holds
    return pid


def _edit_in_supabase(topology, pid: str, job_title: str) -> None:
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("update people set job_title = %s where id = %s", (job_title, pid))


def _wait_for_destroy_hint(hub, record_id: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        with hub.connect() as conn:
            if conn.execute("""select 1 from sync.inbox where kind = 'webhook' and store_record_id = %s
                               and payload->>'eventName' = 'person.destroyed'""", (record_id,)).fetchone():
                return
        assert time.monotonic() < deadline, f"no person.destroyed webhook for {record_id} reached the inbox"
        time.sleep(0.1)


def _sync_with(stores: FourStores, standin, at_step: str, act: Callable[[], None], hold_twenty: bool = False
               ) -> dict[tuple[str, ...], Any]:
    """A whole sync in a thread; when it reaches `at_step`, `act` runs while the sync waits for nothing (or,
    with `hold_twenty`, while the stand-in holds that step's Twenty requests open)."""
    reached = threading.Event()

    def on_step(step: str) -> None:
        if step == at_step:
            if hold_twenty:
                standin.set_faults(latency_seconds=HOLD_SECONDS)
            reached.set()

    run: dict[str, Any] = {}
    sync = threading.Thread(target=lambda: run.update(stats=sync_all(stores.hub, stores.all, "race", on_step)))
    sync.start()
    try:
        assert reached.wait(timeout=120)
        if hold_twenty:
            time.sleep(0.3)  # the step's first request is on its way, held by the stand-in
            standin.set_faults(latency_seconds=0)  # (held requests keep their wait)
        act()
    finally:
        sync.join(timeout=120)
        standin.set_faults(latency_seconds=0)
    return run["stats"]


def test_a_destroy_during_the_publish_of_an_earlier_edit_wins(stores: FourStores, topology, twenty_client,
                                                              twenty_standin, person_webhook):
    pid = _in_every_store(stores, topology)
    _edit_in_supabase(topology, pid, "Turing laureate")  # T1, captured by the next run ...

    def destroy() -> None:
        twenty_client.destroy("people", pid)  # T2 > T1, while that run's publish to Twenty is held open

    race = _sync_with(stores, twenty_standin, "publish twenty people", destroy, hold_twenty=True)
    assert race[("publish", "twenty", "people")].seconds >= HOLD_SECONDS
    _wait_for_destroy_hint(stores.hub, pid)
    sync_all(stores.hub, stores.all, "after")
    sync_all(stores.hub, stores.all, "settled")

    for store in stores.all:
        assert people(store) == [], store.name  # the later destroy won, and Twenty was not repopulated
    assert_stores_match_hub(stores.hub, stores.all)


def test_an_edit_after_a_destroy_during_a_sync_wins_and_the_record_is_recreated(
        stores: FourStores, topology, twenty_client, twenty_standin, person_webhook):
    pid = _in_every_store(stores, topology)

    def destroy_then_edit() -> None:
        twenty_client.destroy("people", pid)  # T1, after this run polled Twenty
        _wait_for_destroy_hint(stores.hub, pid)
        time.sleep(0.01)
        _edit_in_supabase(topology, pid, "Turing laureate")  # T2 > T1

    _sync_with(stores, twenty_standin, "resolve people", destroy_then_edit)
    nxt = sync_all(stores.hub, stores.all, "after")
    assert nxt[("resolve", "people")].conflicts == 1
    sync_all(stores.hub, stores.all, "settled")

    for store in stores.all:
        assert [p["job_title"] for p in people(store)] == ["Turing laureate"], store.name
    assert_stores_match_hub(stores.hub, stores.all)
