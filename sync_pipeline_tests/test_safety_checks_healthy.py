"""The safety checks on a healthy four-store sync: the tests here only look (they change no store, hub,
stand-in or dataset), so they share one sync for the module. A module of its own because the Twenty
stand-in is the session's, emptied by every other test's `twenty_client`; the checks that break something
are in test_safety_checks.py, each on a sync of its own."""

from __future__ import annotations

from typing import Iterator

import dagster as dg
import pytest

from sync_pipeline.commands.safety import overall, run_checks
from sync_pipeline.defs.resources import TwentyResource
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety.checks import Status
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.store import TwentyStore
from sync_pipeline_tests.fixtures.bigquery import fresh_dataset
from sync_pipeline_tests.fixtures.defs import FourStores, four_stores_on, sync_a_healthy_sandbox
from sync_pipeline_tests.fixtures.topology import Topology, fresh_topology
from sync_pipeline_tests.fixtures.twenty import emptied_twenty


@pytest.fixture(scope="module")
def healthy(postgres_server, twenty_standin, bigquery_emulator) -> Iterator[tuple[FourStores, Topology]]:
    """A healthy sandbox, synced once for the module: records in three sources, synced everywhere."""
    with fresh_topology(postgres_server) as topology, emptied_twenty(twenty_standin) as twenty, \
            fresh_dataset(bigquery_emulator) as dataset:
        stores = four_stores_on(topology, twenty_standin, bigquery_emulator, dataset.dataset_id)
        sync_a_healthy_sandbox(stores, topology, twenty)
        yield stores, topology


def _checks(defs: dg.Definitions) -> dict[tuple[str, str], str]:
    with dg.DagsterInstance.ephemeral() as instance:
        lines = run_checks(defs, instance)
    return {(line.asset, line.check): line.status for line in lines}


def test_a_healthy_sync_is_safe(healthy):
    synced, _ = healthy
    statuses = _checks(synced.defs)
    assert len(statuses) > 60
    assert {k: v for k, v in statuses.items() if v != "PASS"} == {}


def test_twenty_not_configured_is_safe_with_warnings(healthy):
    synced, _ = healthy
    defs = synced.without("twenty", TwentyResource())
    with dg.DagsterInstance.ephemeral() as instance:
        lines = run_checks(defs, instance)
    assert overall(lines) == "SAFE_WITH_WARNINGS"
    warned = {(line.asset, line.check) for line in lines if line.status == "WARN"}
    assert ("safety/preflight", "twenty_connection") in warned
    assert all(line.status != "FAIL" for line in lines)


def test_connection_fails_when_twenty_answers_401(healthy, twenty_standin):
    _, topology = healthy
    with TwentyClient(twenty_standin.base_url, "wrong-key") as client:
        verdict = safety.connection(TwentyStore(client, topology.hub.id_map("twenty")))
    assert verdict.status is Status.FAIL and "credentials rejected" in verdict.reason
    assert "wrong-key" not in verdict.reason
