"""Not configured vs misconfigured: a store whose variables are unset is not configured (a WARN, tested in
test_safety_checks); a store whose variables are set but that cannot be reached or authenticated is a FAIL,
named after the store and without its password or key, whether the address has a typo in the host, points
nowhere, or names the wrong database, role, project or path."""

from __future__ import annotations

import dagster as dg
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from sync_pipeline.commands.safety import overall, run_checks
from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.defs.resources import SupabaseResource, TwentyResource
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety.checks import Status, Verdict
from sync_pipeline.sandbox.postgres import free_port
from sync_pipeline.stores.base import SameIds
from sync_pipeline.stores.bigquery import BigQueryStore
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.store import TwentyStore

PASSWORD = "s3cret-Pa55"
API_KEY = "twenty-k3y-0123456789"


def _assert_fails(verdict: Verdict, store: str, *secrets: str) -> None:
    assert verdict.status is Status.FAIL, verdict
    assert verdict.reason.startswith(f"{store}:") or verdict.reason.startswith(f"{store} "), verdict.reason
    assert "not configured" not in verdict.reason
    text = f"{verdict.reason} {verdict.metadata}"
    for secret in secrets:
        assert secret not in text, text


def _nowhere() -> str:
    """A loopback address nothing listens on."""
    return f"127.0.0.1:{free_port()}"


# -- Postgres (Supabase, the local DB) -----------------------------------------------------------------


@pytest.mark.parametrize("dsn", [
    f"postgresql://postgres:{PASSWORD}@db.abcdefghij.supabase.invalid:5432/postgres",  # a typo in the host
    f"postgresql://postgres:{PASSWORD}@{{nowhere}}/postgres",  # nothing listens there
], ids=["host typo", "nothing listening"])
def test_a_postgres_store_with_a_wrong_address_fails(dsn):
    store = PostgresStore("supabase", dsn.format(nowhere=_nowhere()), sslmode="require", connect_timeout=5)
    _assert_fails(safety.connection(store), "supabase", PASSWORD)


def test_a_postgres_store_with_a_wrong_role_or_database_fails(topology):
    port = topology.server.port
    for dsn in (f"postgresql://nobody:{PASSWORD}@127.0.0.1:{port}/postgres",  # authentication refused
                f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/supabsae"):  # a typo in the database
        verdict = safety.connection(PostgresStore("local_db", dsn, connect_timeout=5))
        _assert_fails(verdict, "local_db", PASSWORD)
        assert "cannot connect" in verdict.reason


def test_supabase_requiring_tls_of_a_server_without_it_fails(topology):
    store = PostgresStore("supabase", topology.supabase_dsn, sslmode="require", connect_timeout=5)
    _assert_fails(safety.connection(store), "supabase")


# -- Twenty --------------------------------------------------------------------------------------------


def _twenty(url: str, key: str = API_KEY) -> TwentyStore:
    # Retries short: a real client retries for about half a minute before it gives up.
    return TwentyStore(TwentyClient(url, key, backoff_initial=0.05, backoff_max=0.2), SameIds())


@pytest.mark.parametrize("url", ["http://api.twenty.invalid", "http://{nowhere}"],
                         ids=["host typo", "nothing listening"])
def test_twenty_with_a_wrong_address_fails(url):
    verdict = safety.connection(_twenty(url.format(nowhere=_nowhere())))
    _assert_fails(verdict, "twenty", API_KEY)
    assert "Twenty unavailable" in verdict.reason


def test_twenty_at_a_wrong_path_or_with_a_wrong_key_fails(twenty_standin):
    _assert_fails(safety.connection(_twenty(f"{twenty_standin.base_url}/not-twenty")), "twenty", API_KEY)
    wrong_key = safety.connection(_twenty(twenty_standin.base_url))
    _assert_fails(wrong_key, "twenty", API_KEY)
    assert "credentials rejected" in wrong_key.reason


# -- BigQuery ------------------------------------------------------------------------------------------


def _bigquery(endpoint: str, project: str = "sandbox-project", dataset: str = "crm_sync") -> BigQueryStore:
    client = bigquery.Client(project=project, credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": endpoint})
    return BigQueryStore(client, dataset, check_deadline=3)


def test_bigquery_with_an_emulator_url_pointing_nowhere_fails():
    verdict = safety.connection(_bigquery(f"http://{_nowhere()}"))
    _assert_fails(verdict, "bigquery")
    assert "unreachable" in verdict.reason


def test_bigquery_with_a_wrong_dataset_fails(bigquery_emulator, bigquery_store):
    verdict = safety.connection(_bigquery(bigquery_emulator.endpoint, bigquery_emulator.project, "crm_synk"))
    _assert_fails(verdict, "bigquery")
    assert "does not exist" in verdict.reason


# -- through Dagster, as the UI and the safety command see it ------------------------------------------


def test_a_supabase_url_with_a_typo_in_the_host_is_a_failure_not_an_unconfigured_store(four_stores):
    defs = four_stores.without("supabase", SupabaseResource(
        dsn=f"postgresql://postgres:{PASSWORD}@db.abcdefghij.supabase.invalid:5432/postgres"))
    with dg.DagsterInstance.ephemeral() as instance:
        lines = run_checks(defs, instance)
    assert overall(lines) == "UNSAFE"
    connection = next(line for line in lines if line.check == "supabase_connection")
    # A FAIL that holds back Supabase's own steps (not blocking the other stores) and makes the verdict UNSAFE.
    assert connection.status == "FAIL" and not connection.blocking and "supabase" in connection.reason
    assert [line for line in lines if "not configured" in line.reason] == []
    assert [line for line in lines if PASSWORD in line.reason] == []


def test_a_store_whose_variables_are_unset_is_not_configured(four_stores):
    """The other side of the line: no address at all is an optional store left out, a WARN."""
    with dg.DagsterInstance.ephemeral() as instance:
        lines = run_checks(four_stores.without("bigquery", BigQueryStoreResource()), instance)
    connection = next(line for line in lines if line.check == "bigquery_connection")
    assert connection.status == "WARN" and "not configured" in connection.reason


def test_a_store_set_up_by_halves_is_a_failure_not_optional(four_stores):
    """TWENTY_API_URL without its key is a mistake to name, not an optional store left out."""
    half = TwentyResource(api_url="http://127.0.0.1:9/rest")
    with dg.DagsterInstance.ephemeral() as instance:
        lines = run_checks(four_stores.without("twenty", half), instance)
    connection = next(line for line in lines if line.check == "twenty_connection")
    assert connection.status == "FAIL" and "misconfigured" in connection.reason and "API key" in connection.reason
