"""The fault suite's fixture: the four stores on the session's real servers, empty."""

from __future__ import annotations

import pytest

from sync_pipeline_tests.faults.helpers import FourStores


@pytest.fixture
def stores(topology, twenty_store, bigquery_store) -> FourStores:
    return FourStores(topology.hub, topology.local_db, topology.supabase, twenty_store, bigquery_store)
