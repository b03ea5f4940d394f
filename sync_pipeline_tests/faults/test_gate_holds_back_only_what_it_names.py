"""The gated job (the one sensors and schedules launch) with a duplicate natural key in the local DB and
BigQuery unreachable: every other record reaches every reachable store, the duplicate is held with its
reason, the verdict names both; once BigQuery is back, the next run brings it level (issue 14)."""

from __future__ import annotations

import uuid

import dagster as dg
import psycopg

from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.defs.verdict import VERDICT_KEY
from sync_pipeline_tests.faults.helpers import FourStores, assert_stores_match_hub, sync_all
from sync_pipeline_tests.helpers import insert_person

GATED = "sync_with_safety_check"
BIGQUERY_DOWN = BigQueryStoreResource(project="nowhere", api_endpoint="http://127.0.0.1:9", dataset="crm_sync")


def _gated_run(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(GATED).execute_in_process(instance=instance, raise_on_error=False)


def _failing(instance: dg.DagsterInstance) -> list[str]:
    event = instance.get_latest_materialization_event(VERDICT_KEY)
    assert event is not None and event.asset_materialization is not None
    failing = event.asset_materialization.metadata["failing"].value
    assert isinstance(failing, list)
    return [str(line) for line in failing]


def test_a_duplicate_key_and_bigquery_down_hold_back_only_themselves(stores: FourStores, four_stores, topology,
                                                                      twenty_client):
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Grace", email="grace@navy.mil")
    with psycopg.connect(topology.local_dsn) as conn:
        company = str(uuid.uuid4())
        conn.execute("""insert into companies (id, name, domain_name, ideal_customer_profile)
                        values (%s, 'Acme', 'https://acme.com', true)""", (company,))
    twenty_client.create("people", {"name": {"firstName": "Ada"}, "emails": {"primaryEmail": "ada@example.com"}})
    sync_all(stores.hub, stores.all)
    with psycopg.connect(topology.local_dsn) as conn:
        twin = insert_person(conn, first_name="Twin", email="grace@navy.mil")  # Grace's e-mail, again
        fine = insert_person(conn, first_name="Fine", email="fine@example.com", company_id=company)
        conn.execute("update companies set employees = 42 where id = %s", (company,))
    with dg.DagsterInstance.ephemeral() as instance:
        outage = _gated_run(four_stores.without("bigquery", BIGQUERY_DOWN), instance)
        assert not outage.success  # UNSAFE, and BigQuery's steps failed: a failed run, after all the rest
        failing = _failing(instance)
    assert any("bigquery_connection" in line for line in failing), [x[:90] for x in failing]  # the store
    assert any("people" in line and "unique_keys" in line and "grace@navy.mil" in line  # and the record
               for line in failing), [x[:200] for x in failing if "unique" in x]
    reachable = [stores.local_db, stores.supabase, stores.twenty]
    assert_stores_match_hub(stores.hub, reachable, held={("local_db", twin): "grace@navy.mil"})
    assert fine not in {str(r["id"]) for r in stores.bigquery.rows("people")}  # not reached: it was down

    sync_all(stores.hub, stores.all, "bigquery-back")  # the duplicate alone still waits
    assert_stores_match_hub(stores.hub, stores.all, held={("local_db", twin): "grace@navy.mil"})
