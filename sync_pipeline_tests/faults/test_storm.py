"""A 429/5xx storm at the Twenty stand-in (issue 14), with requests that fail after their write landed:
every record reaches Twenty once, no error stays open for a record Twenty holds at the golden version,
and the verdict returns to SAFE without a manual step."""

from __future__ import annotations

import dagster as dg
import psycopg

from sync_pipeline.commands.safety import run_checks
from sync_pipeline.safety.verdict import overall
from sync_pipeline_tests.faults.helpers import FourStores, assert_stores_match_hub, sync_all
from sync_pipeline_tests.helpers import insert_person


def _open_twenty_errors(hub) -> int:
    with hub.connect() as conn:
        return conn.execute("""select count(*) as n from sync.errors
                               where store = 'twenty' and resolved_at is null""").fetchone()["n"]


def test_after_a_storm_every_record_is_in_twenty_once_and_the_verdict_is_safe_again(
        stores: FourStores, four_stores, topology, twenty_standin, twenty_client):
    with psycopg.connect(topology.supabase_dsn) as conn:
        for n in range(70):
            insert_person(conn, first_name=f"Supa{n}")
    with psycopg.connect(topology.local_dsn) as conn:
        for n in range(50):
            insert_person(conn, first_name=f"Local{n}")
    twenty_client.batch_create("people", [{"name": {"firstName": f"Crm{n}"},
                                           "emails": {"primaryEmail": f"crm{n}@example.com"}} for n in range(10)])

    # The storm: throttled and failed requests (retried), then every write lands and is answered 500.
    twenty_standin.set_faults(throttle_next=3, fail_next=2, fail_status=503, fail_after_write_next=1000)
    storm = sync_all(stores.hub, stores.all, "storm")
    assert storm[("publish", "twenty", "people")].errors == 120  # two batches of 60, every attempt "failed"
    assert _open_twenty_errors(stores.hub) == 120
    landed = twenty_standin.stats()["records"]["people"]["live"] - 10
    assert landed > 0  # writes landed although every answer was a 500 (the batch's rest was never sent)
    twenty_standin.set_faults(throttle_next=0, fail_next=0, fail_after_write_next=0)

    after = sync_all(stores.hub, stores.all, "after-storm")  # no manual step: the next run sorts it out
    assert after[("publish", "twenty", "people")].read == 120 - landed  # what landed is read back, not re-sent
    assert _open_twenty_errors(stores.hub) == 0
    with dg.DagsterInstance.ephemeral() as instance:
        lines = run_checks(four_stores.defs, instance)
    assert overall(lines) == "SAFE", [f"{x.asset} {x.check} {x.status}: {x.reason}" for x in lines
                                      if x.status != "PASS"]
    assert_stores_match_hub(stores.hub, stores.all)
