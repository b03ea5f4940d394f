"""Throughput of PostgresStore.apply against a plain binary COPY, on one durable (fsync on) server.

Four cases, each timed on fresh tables (a fresh database per repetition), median of 3:

- insert:     100k new `people` golden records through `PostgresStore.apply` (staging COPY + guarded
              upsert), change-log triggers installed by `store.install()`, as in production;
- update:     the same 100k ids at a higher version with changed fields, over a table preloaded with
              version 1 through the same apply path;
- plain COPY: the baseline of the goals, ready-made row tuples (uuid.UUID, str, int, datetime), binary
              `COPY` straight into an empty table of the same columns with only its primary key (no
              triggers, no other index);
- plain COPY from golden records: the same COPY, but its rows are built from the golden records inside
              the timed section by apply's own row builder, so the two sides pay the same conversion.

Timing covers connecting, the load and the commit, after VACUUM ANALYZE and CHECKPOINT, so the set-up's
dirty pages and stale statistics are not charged to the timed case. The goal ratios are against the first
baseline. `--profile` adds the wall time of each statement inside one insert and one update apply.

    .venv/bin/python bench/postgres_apply.py [--rows 100000] [--repeat 3] [--profile]
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from itertools import count
from typing import Any

import click
import psycopg
from psycopg import sql

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.canonical import canonical_record, content_hash, python_value
from sync_pipeline.model.entities import FieldType, entity
from sync_pipeline.sandbox.postgres import PostgresServer, run_postgres
from sync_pipeline.stores.postgres import CDC_SCHEMA, PG_TYPES, PostgresStore
from sync_pipeline.stores.postgres.writes import UuidTextBinaryDumper

PEOPLE = entity("people")
COLUMNS = ["id", *PEOPLE.field_names, "sync_version", "updated_at"]
TYPES = ["uuid", *(PG_TYPES[f.type] for f in PEOPLE.fields), "int8", "timestamptz"]
INSERT_GOAL, UPDATE_GOAL = 0.5, 0.3
_databases = count()


def golden_people(ids: list[str], version: int, edited: bool) -> list[GoldenRecord]:
    """Canonical people golden records; `edited` changes four fields of every record."""
    modified = datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(days=version)
    company = str(uuid.UUID(int=1))
    records = []
    for i, record_id in enumerate(ids):
        data = canonical_record(PEOPLE, {
            "first_name": f"Bench{i}",
            "last_name": "Changed" if edited else "Person",
            "email": f"Bench.{i}@Example.com",
            "phone": f"+33 6{i:08d}",
            "job_title": "Lead" if edited else "Tester",
            "city": "Lyon" if edited else "Paris",
            "linkedin_url": f"https://LinkedIn.com/in/bench-{i}/" + ("v2" if edited else ""),
            "company_id": company,
        })
        records.append(GoldenRecord("people", record_id, version, data, False, content_hash(data),
                                    "supabase", modified))
    return records


def row_tuple(g: GoldenRecord) -> tuple:
    """A ready-made COPY tuple for a golden record, in the Python types psycopg maps to the columns."""
    data = g.data or {}
    return (python_value(FieldType.UUID, g.record_id),
            *(python_value(f.type, data.get(f.name)) for f in PEOPLE.fields), g.version, g.origin_modified_at)


@contextmanager
def fresh_store(server: PostgresServer) -> Iterator[tuple[PostgresStore, str]]:
    """A new database with the app tables and change capture installed; dropped afterwards."""
    name = f"bench_{next(_databases)}"
    dsn = server.create_database(name)
    store = PostgresStore("local_db", dsn)
    store.install()
    try:
        yield store, dsn
    finally:
        server.drop_database(name)


def settle(dsn: str) -> None:
    """VACUUM ANALYZE and CHECKPOINT so that no background work lands in the timed section."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("vacuum analyze")
        conn.execute("checkpoint")


def count_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


def check_store(dsn: str, expected_version: int, rows: int) -> None:
    """Row count, versions and an empty change log: our own writes are not captured."""
    with psycopg.connect(dsn) as conn:
        n, low, high = conn.execute(
            "select count(*), min(sync_version), max(sync_version) from public.people").fetchone()
        logged = conn.execute(f"select count(*) from {CDC_SCHEMA}.change_log").fetchone()[0]
    assert n == rows, f"{n} rows in people, expected {rows}"
    assert low == high == expected_version, f"sync_version {low}..{high}, expected {expected_version}"
    assert logged == 0, f"{logged} of our own writes were captured in the change log"


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def run_insert(server: PostgresServer, records: list[GoldenRecord]) -> float:
    with fresh_store(server) as (store, dsn):
        settle(dsn)
        seconds, result = timed(lambda: store.apply(PEOPLE, records))
        assert len(result.applied) == len(records) and not result.stale and not result.failed
        check_store(dsn, records[0].version, len(records))
    return seconds


def run_update(server: PostgresServer, before: list[GoldenRecord], after: list[GoldenRecord]) -> float:
    with fresh_store(server) as (store, dsn):
        store.apply(PEOPLE, before)
        settle(dsn)
        seconds, result = timed(lambda: store.apply(PEOPLE, after))
        assert len(result.applied) == len(after) and not result.stale and not result.failed
        check_store(dsn, after[0].version, len(after))
        sample = store.rows(PEOPLE)[0]
        assert (sample["job_title"], sample["city"], sample["last_name"]) == ("Lead", "Lyon", "Changed")
    return seconds


def run_plain_copy(server: PostgresServer, rows: Callable[[], Iterable[Sequence[Any]]],
                   uuid_text: bool = False) -> float:
    """Binary COPY into an empty table with the same columns and only a primary key, of the rows that
    `rows()` gives inside the timed section; `uuid_text`: its uuids are strings, as apply's rows."""
    name = f"bench_{next(_databases)}"
    dsn = server.create_database(name)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(sql.Identifier(c), sql.SQL(t), sql.SQL(" primary key" if c == "id" else ""))
        for c, t in zip(COLUMNS, TYPES))
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute(sql.SQL("create table people_plain ({})").format(columns))
        settle(dsn)

        def load() -> None:
            with psycopg.connect(dsn) as conn, conn.cursor() as cur:
                if uuid_text:
                    cur.adapters.register_dumper(None, UuidTextBinaryDumper)
                with cur.copy(sql.SQL("copy people_plain ({}) from stdin (format binary)").format(
                        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))) as copy:
                    copy.set_types(TYPES)
                    for row in rows():
                        copy.write_row(row)

        seconds, _ = timed(load)
        written = count_rows(dsn, "people_plain")
    finally:
        server.drop_database(name)
    return seconds, written


class TimedCursor(psycopg.Cursor):
    """A cursor that records the wall time of each statement and COPY, for `--profile`."""

    log: list[tuple[str, float]] = []

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> TimedCursor:
        started = time.perf_counter()
        try:
            return super().execute(query, params, **kwargs)
        finally:
            TimedCursor.log.append((_statement(self, query), time.perf_counter() - started))

    @contextmanager
    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        started = time.perf_counter()
        with super().copy(statement, params, **kwargs) as copy:
            yield copy
        spent = time.perf_counter() - started
        TimedCursor.log.append((_statement(self, statement) + " (rows built inside)", spent))


def _statement(cur: psycopg.Cursor, query: Any) -> str:
    text = query if isinstance(query, str) else query.as_string(cur)
    return " ".join(text.split())[:70]


class ProfiledStore(PostgresStore):
    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with super().connect() as conn:
            conn.cursor_factory = TimedCursor
            yield conn


def profile(server: PostgresServer, before: list[GoldenRecord], after: list[GoldenRecord]) -> None:
    """Wall time of each statement inside one insert and one update through the real apply; the rest is
    Python before and after, connecting and committing."""
    for label, preload, records in (("insert", [], before), ("update", before, after)):
        with fresh_store(server) as (store, dsn):
            if preload:
                store.apply(PEOPLE, preload)
            settle(dsn)
            profiled = ProfiledStore("local_db", dsn)
            TimedCursor.log.clear()
            seconds, _ = timed(lambda: profiled.apply(PEOPLE, records))
        print(f"\n--- {label}: apply {seconds:.3f} s")
        for statement, spent in TimedCursor.log:
            print(f"{spent:7.3f} s  {statement}")
        print(f"{seconds - sum(spent for _, spent in TimedCursor.log):7.3f} s  everything else")


def rate(rows: int, seconds: float) -> str:
    return f"{seconds:6.3f} s  {rows / seconds:>9,.0f} rows/s"


@click.command()
@click.option("--rows", default=100_000, show_default=True)
@click.option("--repeat", default=3, show_default=True)
@click.option("--profile", "with_profile", is_flag=True, help="time each statement inside apply")
def main(rows: int, repeat: int, with_profile: bool) -> None:
    ids = [str(uuid.uuid4()) for _ in range(rows)]
    before = golden_people(ids, version=1, edited=False)
    after = golden_people(ids, version=2, edited=True)
    tuples = [row_tuple(g) for g in before]
    builder = PostgresStore("local_db", "")
    # apply's own row building, as the second baseline pays it; private, but the point is the same code
    from_golden = lambda: builder._copy_rows(PEOPLE, {g.record_id: g for g in before})  # noqa: E731
    times: dict[str, list[float]] = {case: [] for case in ("insert", "update", "plain COPY",
                                                           "plain COPY from golden")}
    with run_postgres(durable=True) as server:
        for _ in range(repeat):
            times["insert"].append(run_insert(server, before))
            times["update"].append(run_update(server, before, after))
            for case, source, uuid_text in (("plain COPY", lambda: tuples, False),
                                            ("plain COPY from golden", from_golden, True)):
                seconds, written = run_plain_copy(server, source, uuid_text)
                assert written == rows, f"{written} rows copied, expected {rows}"
                times[case].append(seconds)
        if with_profile:
            profile(server, before, after)
    median = {case: statistics.median(values) for case, values in times.items()}
    print(f"\n{rows:,} people rows, median of {repeat}, fsync on (all runs: "
          + "; ".join(f"{c} {', '.join(f'{t:.3f}' for t in v)}" for c, v in times.items()) + " s)")
    for case, seconds in median.items():
        print(f"{case:<22} {rate(rows, seconds)}")
    ratios = {case: median["plain COPY"] / median[case] for case in ("insert", "update")}
    for case, goal in (("insert", INSERT_GOAL), ("update", UPDATE_GOAL)):
        fair = median["plain COPY from golden"] / median[case]
        print(f"{case}/plain COPY  {ratios[case]:.2f}x  (goal >= {goal}x: "
              f"{'met' if ratios[case] >= goal else 'MISSED'}); "
              f"{case}/plain COPY from golden records {fair:.2f}x")
    print("row counts asserted; change log empty after every apply (our writes not captured)")
    print(f"SUMMARY rows={rows} repeat={repeat} insert={rows / median['insert']:,.0f}/s "
          f"update={rows / median['update']:,.0f}/s plain_copy={rows / median['plain COPY']:,.0f}/s "
          f"insert_ratio={ratios['insert']:.2f}x (goal {INSERT_GOAL}x) "
          f"update_ratio={ratios['update']:.2f}x (goal {UPDATE_GOAL}x)")


if __name__ == "__main__":
    main()
