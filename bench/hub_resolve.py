"""Throughput of the hub's capture (`Hub.enqueue`) and resolve (`Hub.resolve_pending`) on one durable server.

Three phases on a fresh hub database, each timed alone and checked afterwards:

- capture:       N new people from the local DB into the inbox, in pages as the pipeline captures a
                 change-log source (`pipeline.CHANGE_LOG_PAGE`);
- first resolve: those N changes resolved into N golden records (the first sync);
- edits:         every person edited in Supabase on version 1 (fast-forwards), then every tenth also in the
                 local DB on version 1 (a conflict each, three-way merged), captured and resolved.

    .venv/bin/python bench/hub_resolve.py [--people 20000] [--batch 2000]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import click
import psycopg

from sync_pipeline.engine.records import CapturedChange, Op
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.canonical import canonical_record
from sync_pipeline.model.entities import entity
from sync_pipeline.pipeline import CHANGE_LOG_PAGE
from sync_pipeline.sandbox.postgres import run_postgres
from sync_pipeline.settings import DEFAULTS

PEOPLE = entity("people")
PRIORITY = ("twenty", "supabase", "local_db")
T = TypeVar("T")


def person(i: int, **edits: str) -> dict[str, Any]:
    return canonical_record(PEOPLE, {"first_name": f"Bench{i}", "last_name": "Person",
                                     "email": f"bench.{i}@example.com", "city": "Paris", **edits})


def changes(store: str, ids: Sequence[tuple[int, str]], base: int | None, at: datetime,
            **edits: str) -> list[CapturedChange]:
    return [CapturedChange(rid, rid, Op.UPSERT, person(i, **edits), at, f"{store}:{rid}:{base}", base)
            for i, rid in ids]


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def capture(hub: Hub, store: str, batch: list[CapturedChange]) -> int:
    return sum(hub.enqueue(store, "people", batch[i:i + CHANGE_LOG_PAGE], [], None, "bench")
               for i in range(0, len(batch), CHANGE_LOG_PAGE))


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


def rate(n: int, seconds: float) -> str:
    return f"{n:>7,} in {seconds:6.1f} s = {n / seconds:8,.0f} records/s"


@click.command()
@click.option("--people", default=20_000, show_default=True, help="People in the hub")
@click.option("--batch", default=DEFAULTS.resolve_batch_size, show_default=True,
              help="Inbox rows resolved per hub transaction")
def main(people: int, batch: int) -> None:
    ids = [(i, str(uuid.uuid4())) for i in range(people)]
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with run_postgres(durable=True) as server:
        dsn = server.create_database("bench_hub")
        hub = Hub(dsn)
        hub.migrate()

        seconds, new = timed(lambda: capture(hub, "local_db", changes("local_db", ids, 0, t0)))
        assert new == people
        print(f"capture        {rate(people, seconds)}")
        seconds, stats = timed(lambda: hub.resolve_pending(PEOPLE, "bench", PRIORITY, batch))
        assert stats.applied == people, stats
        print(f"first resolve  {rate(people, seconds)}")

        tenth = ids[::10]
        capture(hub, "supabase", changes("supabase", ids, 1, t0 + timedelta(hours=1), city="Lyon"))
        capture(hub, "local_db", changes("local_db", tenth, 1, t0 + timedelta(hours=2), last_name="Edited"))
        edits = people + len(tenth)
        seconds, stats = timed(lambda: hub.resolve_pending(PEOPLE, "bench", PRIORITY, batch))
        assert (stats.applied, stats.conflicts) == (people, len(tenth)), stats
        print(f"edits resolve  {rate(edits, seconds)}  ({len(tenth):,} conflicts, three-way merged)")

        merged = count(dsn, """select count(*) from sync.golden
                               where data->>'city' = 'Lyon' and data->>'last_name' = 'Edited'""")
        assert merged == len(tenth), f"{merged} merged records, expected {len(tenth)}"
        assert count(dsn, "select count(*) from sync.conflicts where resolution = 'merged'") == len(tenth)
        assert count(dsn, "select count(*) from sync.golden_history") == people * 2 + len(tenth)


if __name__ == "__main__":
    main()
