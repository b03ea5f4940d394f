"""The closing assertion of the fault suite can fail: each kind of difference it exists to catch is found
and named."""

from __future__ import annotations

import psycopg
import pytest

from sync_pipeline_tests.faults.helpers import FourStores, assert_stores_match_hub, sync_all
from sync_pipeline_tests.helpers import insert_person


def test_the_comparison_names_every_kind_of_difference(stores: FourStores, topology, twenty_client):
    with psycopg.connect(topology.supabase_dsn) as conn:
        changed, lost, errored, twice = (insert_person(conn, first_name=n)
                                         for n in ("Changed", "Lost", "Errored", "Twice"))
    sync_all(stores.hub, stores.all)
    assert_stores_match_hub(stores.hub, stores.all)

    with psycopg.connect(topology.local_dsn) as conn:  # behind the sync's back: nothing captures these
        conn.execute("set local sync_pipeline.writer = 'sync'")
        conn.execute("update people set city = 'Nowhere' where id = %s", (changed,))
        conn.execute("delete from people where id = %s", (lost,))
    stray = twenty_client.create("people", {"name": {"firstName": "Stray"},
                                            "emails": {"primaryEmail": "stray@example.com"}})["id"]
    bigquery = stores.bigquery
    table = f"`{bigquery.client.project}.{bigquery.dataset_id}.people`"
    bigquery.client.query(f"insert into {table} select * from {table} where id = '{twice}'").result()
    stores.hub.record_error(store="bigquery", entity="people", record_id=errored, operation="publish",
                            error=TimeoutError("timed out"))

    with pytest.raises(AssertionError) as found:
        assert_stores_match_hub(stores.hub, stores.all, held={("supabase", changed): "anything"})
    said = str(found.value)
    assert f"local_db people {changed}: changed (store, hub): {{'city': ('Nowhere', None)}}" in said
    assert f"local_db people {lost}: lost" in said
    assert f"twenty people {stray}: in the store, not live in the hub" in said
    assert f"bigquery people {errored}: held at the golden version, yet its error stays open" in said
    assert f"bigquery: 2 rows for people {twice}" in said
    assert f"('supabase', '{changed}') should be held" in said
