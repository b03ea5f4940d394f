"""Session fixtures start real servers once; each test gets fresh databases on them."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Iterator

import pytest
from hypothesis import settings


from sync_pipeline.hub.hub import Hub
from sync_pipeline.sandbox.postgres import PostgresServer, run_postgres
from sync_pipeline.stores.postgres import PostgresStore

pytest_plugins = ["sync_pipeline_tests.fixtures.bigquery", "sync_pipeline_tests.fixtures.twenty",
                  "sync_pipeline_tests.fixtures.defs", "sync_pipeline_tests.fixtures.pgbouncer"]

# CI explores the same examples every run, so a landing never hinges on luck; locally they vary.
settings.register_profile("ci", derandomize=True)
settings.load_profile("ci" if os.getenv("CI") else "default")

_db_numbers = itertools.count()

@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with run_postgres(durable=False) as server:
        yield server

@dataclass
class Topology:
    """A hub in the local DB (the default) and a second database playing Supabase."""

    server: PostgresServer
    hub: Hub
    local_db: PostgresStore
    supabase: PostgresStore
    local_dsn: str
    supabase_dsn: str

@pytest.fixture
def topology(postgres_server: PostgresServer) -> Iterator[Topology]:
    n = next(_db_numbers)
    names = (f"local_{os.getpid()}_{n}", f"supabase_{os.getpid()}_{n}")
    local_dsn, supabase_dsn = (postgres_server.create_database(name) for name in names)
    hub = Hub(local_dsn)
    hub.migrate()
    local_db = PostgresStore("local_db", local_dsn, id_map=hub.id_map("local_db"))
    supabase = PostgresStore("supabase", supabase_dsn, id_map=hub.id_map("supabase"))
    local_db.install()
    supabase.install()
    yield Topology(postgres_server, hub, local_db, supabase, local_dsn, supabase_dsn)
    for name in names:
        postgres_server.drop_database(name)
