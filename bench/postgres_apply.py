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
              the timed section by apply's own row builder, so the two sides pay the same conversion;
- dlt insert / dlt update: dlt's fastest Postgres path on the same rows (a ready-made arrow table, loaded
              as parquet through ADBC into dlt's staging dataset, then merged with the `upsert` strategy
              on the primary key `id`) into the table dlt creates; the update run loads the version-2 rows
              over a table preloaded with version 1 by dlt. Needs the `bench` extra
              (`uv pip install -e '.[bench]'`); without it these cases are left out and say so.

Stale overwrites: after the update, the first `--stale` rows are written again at their older version 1,
by our apply and by dlt; the bench counts the rows whose version went back to 1 (ours must stay at 0).

Timing covers connecting, the load and the commit, after VACUUM ANALYZE and CHECKPOINT, so the set-up's
dirty pages and stale statistics are not charged to the timed case. The goal ratios are against the first
baseline. `--profile` adds the wall time of each statement inside one insert and one update apply.

    .venv/bin/python bench/postgres_apply.py [--rows 100000] [--repeat 3] [--stale 1000] [--profile]
"""

from __future__ import annotations

import os
import statistics
import tempfile
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
from sync_pipeline.stores.base import SameIds
from sync_pipeline.stores.postgres import CDC_SCHEMA, PG_TYPES, PostgresStore
from sync_pipeline.stores.postgres.apply import _references, _stage_rows
from sync_pipeline.stores.postgres.writes import use_c_bytes_dumper, wire_types

PEOPLE = entity("people")
# The baseline's columns: what apply writes per row (the row, and its version and modification time, which
# apply keeps in the sync's own schema).
COLUMNS = ["id", *PEOPLE.field_names, "sync_version", "updated_at"]
TYPES = ["uuid", *(PG_TYPES[f.type] for f in PEOPLE.fields), "int8", "timestamptz"]
INSERT_GOAL, UPDATE_GOAL = 0.6, 0.45
DLT_GOAL = 1.3
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
    """Row count, row versions and an empty change log: our own writes are not captured."""
    with psycopg.connect(dsn) as conn:
        n = conn.execute("select count(*) from public.people").fetchone()[0]
        versions, low, high = conn.execute(
            f'select count(*), min(version), max(version) from {CDC_SCHEMA}."public.people.versions"').fetchone()
        logged = conn.execute(f"select count(*) from {CDC_SCHEMA}.change_log").fetchone()[0]
    assert n == versions == rows, f"{n} rows in people, {versions} row versions, expected {rows}"
    assert low == high == expected_version, f"row versions {low}..{high}, expected {expected_version}"
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
                   as_apply: bool = False) -> tuple[float, int]:
    """Binary COPY into an empty table with the same columns and only a primary key, of the rows that
    `rows()` gives inside the timed section; `as_apply`: its uuids are 16 bytes declared as apply declares
    them (`writes.wire_types`)."""
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
                if as_apply:
                    use_c_bytes_dumper(cur)
                with cur.copy(sql.SQL("copy people_plain ({}) from stdin (format binary)").format(
                        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))) as copy:
                    copy.set_types(wire_types(TYPES) if as_apply else TYPES)
                    for row in rows():
                        copy.write_row(row)

        seconds, _ = timed(load)
        written = count_rows(dsn, "people_plain")
    finally:
        server.drop_database(name)
    return seconds, written


def stale_overwrites_ours(server: PostgresServer, before: list[GoldenRecord], after: list[GoldenRecord],
                          sample: int) -> int:
    """Rows whose version went back to 1 when the first `sample` version-1 records were applied after the
    version-2 ones."""
    with fresh_store(server) as (store, dsn):
        store.apply(PEOPLE, before)
        store.apply(PEOPLE, after)
        store.apply(PEOPLE, before[:sample])
        with psycopg.connect(dsn) as conn:
            return conn.execute(f'select count(*) from {CDC_SCHEMA}."public.people.versions" '
                                "where version = 1").fetchone()[0]


def arrow_people(records: list[GoldenRecord]) -> Any:
    """The rows as an arrow table with the baseline's columns: what dlt's fastest path takes in."""
    import pyarrow as pa

    tuples = [row_tuple(g) for g in records]
    columns = {name: [row[i] for row in tuples] for i, name in enumerate(COLUMNS)}
    for name, pg_type in zip(COLUMNS, TYPES):
        if pg_type == "uuid":  # arrow has no uuid type: dlt's own loads carry them as text
            columns[name] = [None if v is None else str(v) for v in columns[name]]
    return pa.table(columns)


class DltLoader:
    """dlt's Postgres destination with the `upsert` merge on `id`, arrow tables loaded as parquet (ADBC),
    one pipeline per database, its local state in a temporary directory."""

    TABLE = "people_dlt"

    def __init__(self, server: PostgresServer, pipelines_dir: str) -> None:
        import dlt

        name = f"bench_{next(_databases)}"
        self.server, self.name = server, name
        self.dsn = server.create_database(name)
        # dlt insists on a password; the bench server trusts loopback and ignores it.
        credentials = self.dsn.replace("postgres@", "postgres:unused@", 1)
        self.pipeline = dlt.pipeline(name, destination=dlt.destinations.postgres(credentials=credentials),
                                     dataset_name="public", pipelines_dir=pipelines_dir)

    def load(self, table: Any) -> None:
        info = self.pipeline.run(table, table_name=self.TABLE, primary_key="id", loader_file_format="parquet",
                                 write_disposition={"disposition": "merge", "strategy": "upsert"})
        formats = {job.job_file_info.file_format for package in info.load_packages
                   for job in package.jobs["completed_jobs"]}
        assert "parquet" in formats, f"dlt did not take its parquet (ADBC) path: {formats}"

    def versions(self) -> tuple[int, int, int]:
        """Rows, and how many hold version 1 and version 2."""
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql.SQL("select count(*), count(*) filter (where sync_version = 1), "
                                        "count(*) filter (where sync_version = 2) from public.{}").format(
                sql.Identifier(self.TABLE))).fetchone()

    def drop(self) -> None:
        self.server.drop_database(self.name)


@contextmanager
def dlt_loader(server: PostgresServer) -> Iterator[DltLoader]:
    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as pipelines_dir:
        loader = DltLoader(server, pipelines_dir)
        try:
            yield loader
        finally:
            loader.drop()


def run_dlt_insert(server: PostgresServer, table: Any, rows: int) -> float:
    with dlt_loader(server) as loader:
        settle(loader.dsn)
        seconds, _ = timed(lambda: loader.load(table))
        assert loader.versions() == (rows, rows, 0), f"dlt insert left {loader.versions()}"
    return seconds


def run_dlt_update(server: PostgresServer, before: Any, after: Any, rows: int, stale: Any) -> tuple[float, int]:
    """The timed update, then the version-1 rows of `stale` loaded again; returns the seconds and the rows
    whose version went back to 1."""
    with dlt_loader(server) as loader:
        loader.load(before)
        settle(loader.dsn)
        seconds, _ = timed(lambda: loader.load(after))
        assert loader.versions() == (rows, 0, rows), f"dlt update left {loader.versions()}"
        loader.load(stale)
        total, reverted, _ = loader.versions()
        assert total == rows
    return seconds, reverted


def dlt_available() -> bool:
    try:
        import adbc_driver_postgresql  # noqa: F401
        import dlt  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


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


def paired(times: dict[str, list[float]], baseline: str, case: str) -> float:
    """How many times faster `case` is than `baseline`, repetition by repetition (they ran side by side,
    so a slower spell of a shared machine hits both), then the median."""
    return statistics.median(b / c for b, c in zip(times[baseline], times[case]))


def ratio_line(label: str, ratio: float, goal: float, extra: str = "") -> str:
    return f"{label:<22} {ratio:5.2f}x  (goal >= {goal}x: {'met' if ratio >= goal else 'MISSED'}){extra}"


@click.command()
@click.option("--rows", default=100_000, show_default=True)
@click.option("--repeat", default=3, show_default=True)
@click.option("--stale", default=1_000, show_default=True, help="older rows written again after the update")
@click.option("--profile", "with_profile", is_flag=True, help="time each statement inside apply")
def main(rows: int, repeat: int, stale: int, with_profile: bool) -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no network call from dlt
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")  # its schema-hint warnings are not the figures
    ids = [str(uuid.uuid4()) for _ in range(rows)]
    before = golden_people(ids, version=1, edited=False)
    after = golden_people(ids, version=2, edited=True)
    tuples = [row_tuple(g) for g in before]
    table = PostgresStore("local_db", "").table(PEOPLE)
    # apply's own row building, as the second baseline pays it; private, but the point is the same code
    from_golden = lambda: _stage_rows(table, _references(table, SameIds(), before),  # noqa: E731
                                      {g.record_id: g for g in before}, set())
    with_dlt = dlt_available()
    cases = ["insert", "update", "plain COPY", "plain COPY from golden"] + (["dlt insert", "dlt update"]
                                                                            if with_dlt else [])
    times: dict[str, list[float]] = {case: [] for case in cases}
    if with_dlt:
        arrow_before, arrow_after, arrow_stale = arrow_people(before), arrow_people(after), arrow_people(
            before[:stale])
    stale_dlt: list[int] = []
    with run_postgres(durable=True) as server:
        # The cases take turns within each repetition, so a slower spell of the machine hits them all.
        for _ in range(repeat):
            times["insert"].append(run_insert(server, before))
            times["update"].append(run_update(server, before, after))
            for case, source, as_apply in (("plain COPY", lambda: tuples, False),
                                            ("plain COPY from golden", from_golden, True)):
                seconds, written = run_plain_copy(server, source, as_apply)
                assert written == rows, f"{written} rows copied, expected {rows}"
                times[case].append(seconds)
            if with_dlt:
                times["dlt insert"].append(run_dlt_insert(server, arrow_before, rows))
                seconds, reverted = run_dlt_update(server, arrow_before, arrow_after, rows, arrow_stale)
                times["dlt update"].append(seconds)
                stale_dlt.append(reverted)
        stale_ours = stale_overwrites_ours(server, before, after, stale)
        if with_profile:
            profile(server, before, after)
    median = {case: statistics.median(values) for case, values in times.items()}
    print(f"\n{rows:,} people rows, median of {repeat}, fsync on (all runs: "
          + "; ".join(f"{c} {', '.join(f'{t:.3f}' for t in v)}" for c, v in times.items()) + " s)")
    for case, seconds in median.items():
        print(f"{case:<22} {rate(rows, seconds)}")
    ratios = {case: paired(times, "plain COPY", case) for case in ("insert", "update")}
    print("\nours / plain COPY (speed, higher is better; median of the repetitions' ratios)")
    for case, goal in (("insert", INSERT_GOAL), ("update", UPDATE_GOAL)):
        fair = paired(times, "plain COPY from golden", case)
        print(ratio_line(case, ratios[case], goal, f"; against COPY from golden records {fair:.2f}x"))
    summary = (f"SUMMARY rows={rows} repeat={repeat} insert={rows / median['insert']:,.0f}/s "
               f"update={rows / median['update']:,.0f}/s plain_copy={rows / median['plain COPY']:,.0f}/s "
               f"insert_vs_copy={ratios['insert']:.2f}x (goal {INSERT_GOAL}x) "
               f"update_vs_copy={ratios['update']:.2f}x (goal {UPDATE_GOAL}x)")
    if with_dlt:
        versus_dlt = {case: paired(times, f"dlt {case}", case) for case in ("insert", "update")}
        print("ours / dlt's fastest path (arrow + ADBC parquet, upsert merge)")
        for case in ("insert", "update"):
            print(ratio_line(case, versus_dlt[case], DLT_GOAL))
        summary += (f" insert_vs_dlt={versus_dlt['insert']:.2f}x update_vs_dlt={versus_dlt['update']:.2f}x "
                    f"(goal {DLT_GOAL}x)")
    else:
        print("dlt left out: the `bench` extra (dlt[postgres], adbc-driver-postgresql, pyarrow) is not installed")
    print(f"\nstale overwrites ({stale:,} version-1 rows written after version 2): ours {stale_ours:,}"
          + (f", dlt {max(stale_dlt):,}" if with_dlt else "") + " (ours must be 0)")
    summary += f" stale_ours={stale_ours}" + (f" stale_dlt={max(stale_dlt)}" if with_dlt else "")
    print("row counts asserted; change log empty after every apply (our writes not captured)")
    print(summary)


if __name__ == "__main__":
    main()
