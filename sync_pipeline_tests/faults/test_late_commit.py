"""A transaction that took its xid early and commits after a capture reaches every store (issue 14)."""

from __future__ import annotations

import psycopg

from sync_pipeline_tests.faults.helpers import FourStores, assert_stores_match_hub, sync_all
from sync_pipeline_tests.helpers import insert_person


def test_a_transaction_committed_after_a_capture_reaches_every_store(stores: FourStores, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        settled = insert_person(conn, first_name="Settled")
    sync_all(stores.hub, stores.all)

    early = psycopg.connect(topology.supabase_dsn)
    try:
        early.execute("select pg_current_xact_id()")  # takes its xid before the others
        late = insert_person(early, first_name="Late")
        early.execute("update people set city = 'Paris' where id = %s", (settled,))
        with psycopg.connect(topology.supabase_dsn) as conn:  # commits at once, behind the open xid
            quick = insert_person(conn, first_name="Quick")
        with psycopg.connect(topology.local_dsn) as conn:  # another store goes on meanwhile
            local = insert_person(conn, first_name="Local")
        held_back = sync_all(stores.hub, stores.all, "during")
        assert held_back[("capture", "supabase", "people")].read == 0  # the open xid holds the watermark
        early.commit()
    finally:
        early.close()
    sync_all(stores.hub, stores.all, "after")

    golden = stores.hub.golden_snapshot("people")
    assert {settled, late, quick, local} == set(golden)
    assert (golden[settled][1] or {}).get("city") == "Paris"
    assert_stores_match_hub(stores.hub, stores.all)
