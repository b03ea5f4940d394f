"""Session fixtures start real servers once; each test gets fresh databases on them."""

from __future__ import annotations

import os
from pathlib import Path
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

# scripts/test.sh runs the suite on two pytest-xdist workers with `--dist loadgroup`. A module's tests go to
# one worker together, in file order, since they may share module-scoped fixtures (ui/'s Dagster webserver, a
# Twenty stand-in holding a module's records). The tests of SPREAD_MODULES set up all they use for themselves
# (a fresh topology and sync each), so they are handed out one by one, last, to whichever worker is free; the
# longest modules go first (`--no-loadscope-reorder` keeps this order): none is left for the end of the run.
SPREAD_MODULES = {"test_safety_checks.py"}
LONG_MODULES = ["ui/test_dagster_ui.py", "test_adoption.py", "faults/test_destroy_races_an_edit.py",
                "test_convergence_property.py", "test_automation.py", "test_twenty_destroys.py",
                "faults/test_kill9.py"]
TESTS_DIR = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(module: str) -> int:
        if module in LONG_MODULES:
            return LONG_MODULES.index(module)
        return len(LONG_MODULES) + (module in SPREAD_MODULES)

    modules = {item: item.path.relative_to(TESTS_DIR).as_posix() for item in items}
    items.sort(key=lambda item: rank(modules[item]))  # stable: file order within a rank
    for item in items:
        if modules[item] not in SPREAD_MODULES:
            item.add_marker(pytest.mark.xdist_group(modules[item]))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with run_postgres(durable=False) as server:
        yield server

@pytest.fixture
def topology(postgres_server: PostgresServer) -> Iterator[Topology]:
    with fresh_topology(postgres_server) as fresh:
        yield fresh
