"""One sync of the four stores in a process of its own, for the kill -9 test: `python -m
sync_pipeline_tests.faults.sync_process`, then one line of JSON with the stores' addresses on its stdin.
It prints `step <name>` before each step (flushed), so the test can kill it at a chosen point, and `done`
at the end. The configuration comes after start-up so that the test can start the next process (its
imports take seconds) while the one before is still syncing."""

from __future__ import annotations

import json
import sys

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from sync_pipeline.hub.hub import Hub
from sync_pipeline.stores.base import Store
from sync_pipeline.stores.bigquery import BigQueryStore
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.store import TwentyStore
from sync_pipeline_tests.faults.helpers import sync_all


def main(config: dict[str, str]) -> None:
    hub = Hub(config["local_dsn"])
    client = bigquery.Client(project=config["bigquery_project"], credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": config["bigquery_endpoint"]})
    with TwentyClient(config["twenty_url"], config["twenty_key"], requests_per_minute=100_000) as twenty:
        stores: list[Store] = [PostgresStore("local_db", config["local_dsn"], id_map=hub.id_map("local_db")),
                  PostgresStore("supabase", config["supabase_dsn"], id_map=hub.id_map("supabase")),
                  TwentyStore(twenty, hub.id_map("twenty")),
                  BigQueryStore(client, config["bigquery_dataset"])]
        sync_all(hub, stores, config["run_id"], on_step=lambda name: print(f"step {name}", flush=True))
    print("done", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.stdin.readline()))
