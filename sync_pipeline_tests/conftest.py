"""Session fixtures start real servers once; each test gets fresh databases on them."""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from hypothesis import settings

from sync_pipeline.sandbox.postgres import PostgresServer, run_postgres
from sync_pipeline_tests.fixtures.topology import Topology, fresh_topology

pytest_plugins = ["sync_pipeline_tests.fixtures.bigquery", "sync_pipeline_tests.fixtures.twenty",
                  "sync_pipeline_tests.fixtures.defs", "sync_pipeline_tests.fixtures.pgbouncer"]

# CI explores the same examples every run, so a landing never hinges on luck; locally they vary.
settings.register_profile("ci", derandomize=True)
settings.load_profile("ci" if os.getenv("CI") else "default")

@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with run_postgres(durable=False) as server:
        yield server

@pytest.fixture
def topology(postgres_server: PostgresServer) -> Iterator[Topology]:
    with fresh_topology(postgres_server) as fresh:
        yield fresh
