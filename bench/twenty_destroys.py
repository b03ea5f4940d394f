"""How long a destroy in Twenty takes to reach the other stores, with its webhook and without it, and what the
listing of ids that finds the second kind costs.

Starts Postgres (the local DB holding the hub, and Supabase), the Twenty stand-in seeded like the sandbox and
the webhook receiver (`sync-pipeline webhooks`), syncs everything in, then:

1. destroys a person with its webhook delivered, and runs one sync as soon as the hint is in the inbox (the
   `webhook_inbox_sensor` launches that run in production);
2. destroys another with every webhook dropped (the stand-in's knob): a sync with the listing not due keeps
   it, the first sync with the listing due deletes it; prints that sync's time and the listing's requests.

Prints each figure, and the bound that the cadences put on each case in production.

    .venv/bin/python bench/twenty_destroys.py [--people 2000] [--page-size-max 60] [--requests-per-minute 1200]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Sequence

import click
import httpx
import psycopg

from sync_pipeline import pipeline
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.entities import ENTITIES
from sync_pipeline.sandbox.postgres import free_port, run_postgres
from sync_pipeline.sandbox.twenty.server import run_standin
from sync_pipeline.settings import SyncSettings, sync_interval_minutes
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.mapping import twenty_object
from sync_pipeline.stores.twenty.store import TwentyStore

SECRET = "bench-webhook-secret"
SENSOR_SECONDS = 30  # defs/automation.py: webhook_inbox_sensor's minimum interval
SETTINGS = SyncSettings()


def sync(hub: Hub, stores: Sequence[PostgresStore | TwentyStore]) -> float:
    """One run of the sync job without Dagster (every store here is a source and a target); its seconds."""
    started = time.monotonic()
    for e in ENTITIES:
        for s in stores:
            pipeline.capture(hub, s, e, "bench", SETTINGS)
        pipeline.resolve(hub, e, "bench", SETTINGS)
        for s in stores:
            pipeline.publish(hub, s, e, "bench", SETTINGS)
    return time.monotonic() - started


def in_supabase(dsn: str, person_id: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select 1 from people where id = %s", (person_id,)).fetchone() is not None


def unreferenced_people(client: TwentyClient) -> list[str]:
    """People no opportunity points at, so destroying one changes nothing else in Twenty."""
    contacts = {o.get("pointOfContactId") for o in client.list("opportunities")}
    return [p["id"] for p in client.list("people") if p["id"] not in contacts]


def start_receiver(hub_dsn: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SYNC_HUB_DATABASE_URL": hub_dsn, "TWENTY_WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen([sys.executable, "-m", "sync_pipeline.cli", "webhooks", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return process, f"{url}/hooks/twenty"
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the webhook receiver did not start")


def wait_for_hint(hub: Hub, person_id: str) -> float:
    started = time.monotonic()
    while True:
        with hub.connect() as conn:
            if conn.execute("""select 1 from sync.inbox where kind = 'webhook' and store_record_id = %s
                               and payload->>'eventName' = 'person.destroyed'""", (person_id,)).fetchone():
                return time.monotonic() - started
        if time.monotonic() - started > 30:
            raise RuntimeError("the destroy's webhook never reached the inbox")
        time.sleep(0.01)


@click.command()
@click.option("--people", default=2000, show_default=True)
@click.option("--companies", default=300, show_default=True)
@click.option("--opportunities", default=600, show_default=True)
@click.option("--page-size-max", default=60, show_default=True, help="the stand-in's page cap: 60, or 200 (2026)")
@click.option("--requests-per-minute", "rpm", default=1200, show_default=True, help="as the sandbox allows")
def main(people: int, companies: int, opportunities: int, page_size_max: int, rpm: int) -> None:
    with run_postgres(durable=False) as server, run_standin(
            seed_companies=companies, seed_people=people, seed_opportunities=opportunities,
            page_size_max=page_size_max, rate_limit_per_minute=rpm, rate_limit_per_second=rpm) as standin:
        local_dsn, supabase_dsn = server.create_database("bench_local"), server.create_database("bench_supabase")
        hub = Hub(local_dsn)
        hub.migrate()
        postgres = [PostgresStore(name, dsn, id_map=hub.id_map(name))
                    for name, dsn in (("local_db", local_dsn), ("supabase", supabase_dsn))]
        for store in postgres:
            store.install()
        receiver, url = start_receiver(local_dsn)
        with TwentyClient(standin.base_url, standin.api_key, requests_per_minute=rpm) as client, \
                standin.client() as admin:
            try:
                admin.post("/rest/metadata/webhooks",
                           json={"targetUrl": url, "operations": ["person.*"], "secret": SECRET}).raise_for_status()

                def twenty(listing: timedelta) -> TwentyStore:
                    return TwentyStore(client, hub.id_map("twenty"), id_listing_interval=listing)

                not_due = twenty(timedelta(minutes=15))
                first = sync(hub, [*postgres, not_due])
                sync(hub, [*postgres, not_due])
                click.echo(f"first sync of {companies} companies, {people} people, {opportunities} opportunities: "
                           f"{first:.1f} s")
                victims = unreferenced_people(client)

                # 1. With its webhook
                victim = victims[0]
                client.destroy("people", victim)
                hint = wait_for_hint(hub, victim)
                took = sync(hub, [*postgres, not_due])
                assert not in_supabase(supabase_dsn, victim), "the webhook's destroy did not propagate"
                click.echo(f"with its webhook: hint in the inbox {hint * 1000:.0f} ms after the destroy; the next "
                           f"sync ({took:.1f} s) deleted it everywhere")
                click.echo(f"  in production: <= {SENSOR_SECONDS} s (webhook_inbox_sensor) + run start + "
                           f"{took:.0f} s")

                # 2. Webhook lost
                standin.set_faults(webhook_drop_rate=1.0)
                victim = victims[1]
                client.destroy("people", victim)
                took = sync(hub, [*postgres, not_due])
                assert in_supabase(supabase_dsn, victim), "deleted although nothing could have said so"
                before = client.requests
                listing_started = time.monotonic()
                for e in ENTITIES:
                    sum(1 for _ in client.ids(twenty_object(e)))
                listing_seconds = time.monotonic() - listing_started
                listing_requests = client.requests - before
                took_due = sync(hub, [*postgres, twenty(timedelta(0))])
                assert not in_supabase(supabase_dsn, victim), "the listing did not find the destroy"
                click.echo(f"webhook lost: a sync with the listing not due ({took:.1f} s) keeps it; the first sync "
                           f"with the listing due ({took_due:.1f} s) deleted it everywhere")
                click.echo(f"  the listing of {companies + people + opportunities} ids: {listing_requests} requests "
                           f"({listing_seconds:.1f} s here at {rpm}/min; "
                           f"{listing_requests * 60 / 100:.0f} s of Twenty Cloud's 100/min), at most once per "
                           f"id_listing_minutes")
                bound = 15 + sync_interval_minutes()
                click.echo(f"  in production: <= id_listing_minutes (15) + SYNC_INTERVAL_MINUTES "
                           f"({sync_interval_minutes()}) = {bound} min, was the nightly reconciliation (<= 24 h)")
            finally:
                receiver.terminate()
                receiver.wait(timeout=10)


if __name__ == "__main__":
    main()
