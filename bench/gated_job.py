"""Duration and step count of the gated job (`sync_with_safety_check`) with nothing to sync, on the test
topology: a Postgres server holding the local DB (and the hub) and a database playing Supabase, the Twenty
stand-in and the BigQuery emulator, all four stores configured as the test fixtures configure them.

One warm-up run syncs a few seeded records (and installs what the first run installs); then N runs of the
gated job find nothing to sync, each on the same Dagster instance (as the daemon runs them). Prints the
median and the spread of their wall times, and how many Dagster steps one run executes.

    .venv/bin/python bench/gated_job.py [--runs 5]
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path

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
from sync_pipeline.hub.hub import Hub
from sync_pipeline.sandbox.bigquery_emulator import run_bigquery_emulator
from sync_pipeline.sandbox.postgres import run_postgres
from sync_pipeline.sandbox.twenty.server import run_standin
from sync_pipeline.stores.postgres import PostgresStore

UNLIMITED = 100_000  # requests/min: the bench is about the job, not Twenty's budget
READY_SECONDS = 240


def _seed(local_dsn: str, supabase_dsn: str) -> None:
    for dsn, name in ((local_dsn, "Local"), (supabase_dsn, "Supa")):
        with psycopg.connect(dsn) as conn:
            for i in range(5):
                conn.execute("insert into public.people (id, first_name, last_name, email) values (%s, %s, %s, %s)",
                             (str(uuid.uuid4()), f"{name}{i}", "Bench", f"{name.lower()}{i}@example.com"))


def _steps(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for event in result.all_events if event.event_type_value == "STEP_START")


@click.command()
@click.option("--runs", default=5, show_default=True, help="Gated runs with nothing to sync, after one warm-up.")
def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as home, run_postgres(durable=False) as server, \
            run_standin(rate_limit_per_minute=UNLIMITED, rate_limit_per_second=UNLIMITED,
                        startup_timeout=READY_SECONDS) as twenty, \
            run_bigquery_emulator(startup_timeout=READY_SECONDS) as emulator:
        local_dsn, supabase_dsn = server.create_database("bench_local"), server.create_database("bench_supabase")
        Hub(local_dsn).migrate()
        for name, dsn in (("local_db", local_dsn), ("supabase", supabase_dsn)):
            PostgresStore(name, dsn).install()
        _seed(local_dsn, supabase_dsn)
        bigquery = BigQueryStoreResource(project=emulator.project, api_endpoint=emulator.endpoint,
                                         dataset="crm_sync_bench")
        resources = {
            "hub": HubResource(dsn=local_dsn),
            "local_db": LocalDbResource(dsn=local_dsn),
            "supabase": SupabaseResource(dsn=supabase_dsn, sslmode="disable"),
            "twenty": TwentyResource(api_url=twenty.base_url, api_key=twenty.api_key,
                                     requests_per_minute=UNLIMITED),
            "bigquery": bigquery,
            "sync_settings": SyncSettingsResource(),
        }
        bigquery.store(Hub(local_dsn)).install()  # the dataset and tables, as `sync-pipeline install` makes them
        located = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                                 resources=resources)
        job = located.resolve_job_def("sync_with_safety_check")
        with dg.DagsterInstance.local_temp(tempdir=str(Path(home))) as instance:
            warm = job.execute_in_process(instance=instance, raise_on_error=False)
            if not warm.success:
                raise SystemExit(f"the warm-up run failed (run {warm.run_id})")
            seconds, steps = [], 0
            for _ in range(runs):
                started = time.perf_counter()
                result = job.execute_in_process(instance=instance, raise_on_error=False)
                seconds.append(time.perf_counter() - started)
                if not result.success:
                    raise SystemExit(f"a gated run with nothing to sync failed (run {result.run_id})")
                steps = _steps(result)
    print(f"gated job (sync_with_safety_check), nothing to sync, {runs} runs after one warm-up:")
    print(f"  median {statistics.median(seconds):.2f} s  (min {min(seconds):.2f} s, max {max(seconds):.2f} s)")
    print(f"  steps per run: {steps}")


if __name__ == "__main__":
    main()
