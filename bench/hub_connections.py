"""Connections a sync opens to the hub: `sync_job` run in process by Dagster, with the hub in a database of its
own (so that the stores' connections are not counted), the local DB and Supabase holding a few people,
Twenty and BigQuery not configured.

Counted by the server: `pg_stat_database.sessions` of the hub's database before and after each run (the
sessions established to it, read once every backend of the run has ended and reported). Three runs: the
first sync (the people move), then an empty sync (nothing changed), with the hub's pool and without it (every
unit of hub work connecting anew, as before the pool).

    .venv/bin/python bench/hub_connections.py [--people 20]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import click
import dagster as dg
import psycopg

from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.defs.resources import (
    HubResource,
    LocalDbResource,
    SupabaseResource,
    SyncSettingsResource,
    TwentyResource,
)
from sync_pipeline.definitions import defs
from sync_pipeline.sandbox.postgres import PostgresServer, run_postgres
from sync_pipeline.stores.postgres import PostgresStore


class UnpooledHubResource(HubResource):
    """The hub's resource without its pool: every unit of hub work opens its own connection."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.hub().migrate()


def sessions(server: PostgresServer, database: str) -> int:
    """Sessions ever established to the database, once the ended ones have reported (they do on exit)."""
    time.sleep(1.5)
    with psycopg.connect(server.dsn()) as conn:
        row = conn.execute("select sessions from pg_stat_database where datname = %s", (database,)).fetchone()
        assert row is not None
        return int(row[0])


def run_sync(resources: Mapping[str, Any]) -> None:
    job = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                         resources=resources).resolve_job_def("sync_job")
    with dg.DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(instance=instance).success


def counted(server: PostgresServer, resources: Mapping[str, Any]) -> int:
    before = sessions(server, "hub")
    run_sync(resources)
    return sessions(server, "hub") - before


@click.command()
@click.option("--people", default=20, show_default=True, help="People in the local DB before the first sync")
def main(people: int) -> None:
    with run_postgres(durable=False) as server:
        hub_dsn, local_dsn, supabase_dsn = (server.create_database(name) for name in ("hub", "local", "supabase"))
        for dsn in (local_dsn, supabase_dsn):
            PostgresStore("local_db", dsn).install()
        with psycopg.connect(local_dsn) as conn:
            for i in range(people):
                conn.execute("insert into public.people (id, first_name, email) values (%s, %s, %s)",
                             (uuid.uuid4(), f"Conn{i}", f"conn.{i}@example.com"))
        stores = {"local_db": LocalDbResource(dsn=local_dsn),
                  "supabase": SupabaseResource(dsn=supabase_dsn, sslmode="disable"),
                  "twenty": TwentyResource(), "bigquery": BigQueryStoreResource(),  # not configured
                  "sync_settings": SyncSettingsResource()}
        pooled = {**stores, "hub": HubResource(dsn=hub_dsn)}
        unpooled = {**stores, "hub": UnpooledHubResource(dsn=hub_dsn)}

        print(f"first sync ({people} people), pooled: {counted(server, pooled):4d} hub connections")
        print(f"empty sync, pooled:             {counted(server, pooled):4d} hub connections")
        print(f"empty sync, without the pool:   {counted(server, unpooled):4d} hub connections")


if __name__ == "__main__":
    main()
