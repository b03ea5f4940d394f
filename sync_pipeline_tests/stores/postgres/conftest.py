"""The `mapped` fixture: the hub in a local DB and a Supabase database whose app schemas differ from the
canonical one (`mapped.py`), with the stores configured onto them. Nothing is installed: tests install."""

from __future__ import annotations

import itertools
import os
from typing import Iterator

import pytest

from sync_pipeline.hub.hub import Hub
from sync_pipeline.sandbox.postgres import PostgresServer
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline_tests.stores.postgres.mapped import (
    LOCAL_SCHEMA,
    SUPABASE_SCHEMA,
    Mapped,
    mapped_config,
    run_sql,
)

_numbers = itertools.count()


@pytest.fixture
def mapped(postgres_server: PostgresServer) -> Iterator[Mapped]:
    n = next(_numbers)
    names = (f"mapped_local_{os.getpid()}_{n}", f"mapped_supabase_{os.getpid()}_{n}")
    local_dsn, supabase_dsn = (postgres_server.create_database(name) for name in names)
    run_sql(local_dsn, LOCAL_SCHEMA)
    run_sql(supabase_dsn, SUPABASE_SCHEMA)
    hub = Hub(local_dsn)
    hub.migrate()
    config = mapped_config()
    yield Mapped(hub, PostgresStore("local_db", local_dsn, id_map=hub.id_map("local_db"), config=config),
                 PostgresStore("supabase", supabase_dsn, id_map=hub.id_map("supabase"), config=config),
                 local_dsn, supabase_dsn)
    for name in names:
        postgres_server.drop_database(name)
