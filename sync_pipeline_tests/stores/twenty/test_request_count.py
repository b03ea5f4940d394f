"""A small sync costs Twenty the same number of requests whatever the number of records Twenty holds: counted
by the stand-in (a real server over HTTP) for CRMs of two sizes whose records were last changed long ago, as
most of a CRM's are. What a sync reads is what changed since its watermark (and within the overlap window
behind it); nothing on a run lists a whole object but the id listing, due once per `id_listing_interval`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from sync_pipeline.hub.hub import Hub
from sync_pipeline.sandbox.postgres import PostgresServer
from sync_pipeline.sandbox.twenty.seed import seed_id
from sync_pipeline.sandbox.twenty.server import StandinServer, run_standin
from sync_pipeline.stores.base import Store
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.store import TwentyStore
from sync_pipeline_tests.fixtures import SERVER_READY_SECONDS
from sync_pipeline_tests.fixtures.twenty import FAST
from sync_pipeline_tests.helpers import sync_once

SMALL, LARGE = 120, 1200  # people Twenty holds: 2 and 20 pages of a listing
EDITS = 5  # people edited in Twenty and as many in Supabase


@dataclass
class Requests:
    first_sync: int
    small_sync: int  # takes in the edits made on both sides, writes Supabase's to Twenty
    echo_sync: int  # reads back what the small sync wrote to Twenty


@contextmanager
def _standin(people: int) -> Iterator[StandinServer]:
    with run_standin(seed_people=people, rate_limit_per_minute=FAST, rate_limit_per_second=FAST,
                     startup_timeout=SERVER_READY_SECONDS) as server:
        yield server


def _requests_of_syncs(server: PostgresServer, people: int) -> Requests:
    """Syncs Twenty (seeded with `people`) with a fresh hub and Supabase: the first sync, then a sync of
    EDITS edits on each side, then the sync after it; the requests the stand-in answered for each."""
    names = [f"twenty_requests_{kind}_{os.getpid()}_{people}" for kind in ("hub", "supabase")]
    hub_dsn, supabase_dsn = (server.create_database(name) for name in names)
    try:
        with _standin(people) as standin, TwentyClient(standin.base_url, standin.api_key,
                                                       requests_per_minute=FAST) as client:
            hub = Hub(hub_dsn)
            hub.migrate()
            supabase = PostgresStore("supabase", supabase_dsn, id_map=hub.id_map("supabase"))
            supabase.install()
            stores: list[Store] = [TwentyStore(client, hub.id_map(TwentyStore.name)), supabase]

            def counted_sync() -> int:
                before = standin.stats()["requests"]
                sync_once(hub, stores)
                return int(standin.stats()["requests"] - before)

            first = counted_sync()
            counted_sync()  # settles: the first sync's writes to Supabase are not echoed to Twenty
            edited_in_twenty = [seed_id("person", i) for i in range(EDITS)]
            for person_id in edited_in_twenty:
                client.update("people", person_id, {"jobTitle": "Edited in Twenty"})
            with psycopg.connect(supabase_dsn) as conn:
                edited_in_supabase = [str(r[0]) for r in conn.execute(
                    "update people set job_title = 'Edited in Supabase' where id in (select id from people "
                    "where id <> all(%s::uuid[]) order by id limit %s) returning id",
                    (edited_in_twenty, EDITS)).fetchall()]
            small, echo = counted_sync(), counted_sync()
            with psycopg.connect(supabase_dsn) as conn:
                assert {str(r[0]) for r in conn.execute(
                    "select id from people where job_title = 'Edited in Twenty'")} == set(edited_in_twenty)
            assert {client.get("people", i)["jobTitle"] for i in edited_in_supabase} == {"Edited in Supabase"}
            return Requests(first, small, echo)
    finally:
        for name in names:
            server.drop_database(name)


def test_a_small_sync_requests_as_much_of_a_small_and_a_large_twenty(postgres_server):
    small, large = (_requests_of_syncs(postgres_server, people) for people in (SMALL, LARGE))
    assert large.first_sync > small.first_sync  # the first sync reads everything: the sizes differ
    assert (large.small_sync, large.echo_sync) == (small.small_sync, small.echo_sync), (small, large)
