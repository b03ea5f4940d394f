"""What a sync costs as the store grows: the first sync of N people, then syncs of 100 changes, through the
gated job (`sync_with_safety_check`) that the sensors launch.

For each size N, in a process of its own (so that its memory figures are its own), on a fresh Postgres server
(fsync on) holding the local DB (and the hub) and a database playing Supabase, configured through the
environment exactly as `sync_pipeline.definitions` reads it, installed by `sync-pipeline install`'s code:

- first sync: N people committed in the local DB (a COPY, captured by the change-log triggers), then one
  gated run on a temporary Dagster instance; records/s = N / the run's wall time (the whole run: capture from
  the local DB, resolve in the hub, publish to Supabase and to every other configured store, the checks and
  Dagster's own work; the stores it includes are printed beside it, with the goal), the peak RSS of this
  process during it (sampled from /proc/self/status every 50 ms), its slowest steps, and the CPU it took:
  this process's and the Postgres server's (its processes' times in /proc), against what the machine's cores
  had (cores x wall time); Supabase must then hold the N people;
- 100-change syncs (`--change-runs`, median): 100 of those people edited in the local DB in one
  transaction, then one gated run; its wall time, peak RSS, the Postgres statements and connections the
  server received (counted from its log, with `log_statement = all` and `log_connections = on` switched on
  by ALTER SYSTEM for that run only: every simple-protocol statement, extended-protocol execute and COPY,
  COMMIT included; pg_stat_statements needs a server restart, which the bench's server does not offer), and
  the API requests the Twenty stand-in answered; Supabase (and Twenty, BigQuery when measured) must then
  hold the 100 edits.

`--twenty` adds the Twenty stand-in (no rate limit), `--bigquery` the BigQuery emulator: both are targets of
the N people in the first sync. Without them those stores are not configured (their checks warn).

    .venv/bin/python bench/scale.py [--sizes 10000,50000] [--change-runs 3] [--twenty] [--bigquery]
    .venv/bin/python bench/scale.py --sizes 10000,1000000     # the issue's sizes: hours and gigabytes today
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import psycopg

from sync_pipeline.sandbox.postgres import PostgresServer, run_postgres

if TYPE_CHECKING:
    from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
    from sync_pipeline.sandbox.twenty.server import StandinServer

CHANGES = 100
SLOWEST = 5  # steps named per 100-change run, where its time goes
UNLIMITED = 1_000_000  # requests/min for the stand-in: the bench measures the sync, not Twenty's budget
READY_SECONDS = 240
RESULT_PREFIX = "SCALE_RESULT "
# A statement as log_statement = all logs it: simple protocol, or the execute step of the extended protocol.
STATEMENT_LINE = re.compile(r"LOG:  (statement|execute [^:]*): ")
CONNECTION_LINE = re.compile(r"LOG:  connection authorized: ")
T = TypeVar("T")


class PeakRss:
    """The largest resident set size of this process while the block runs, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()

    @staticmethod
    def current_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc/self/status")

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_kib = max(self.peak_kib, self.current_kib())

    @contextmanager
    def watching(self) -> Iterator[PeakRss]:
        self.peak_kib = self.current_kib()
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self.peak_kib = max(self.peak_kib, self.current_kib())
            self._stop.clear()

    @property
    def mib(self) -> float:
        return self.peak_kib / 1024


@contextmanager
def statements_logged(server: PostgresServer) -> Iterator[dict[str, int]]:
    """Counts the statements and connections the server logs while the block runs (every database)."""
    log = server.data_dir / "server.log"
    start = log.stat().st_size
    counts = {"statements": 0, "connections": 0}
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("alter system set log_statement = 'all'")
        conn.execute("alter system set log_connections = on")
        conn.execute("select pg_reload_conf()")
    time.sleep(0.5)  # the postmaster re-reads its configuration asynchronously
    try:
        yield counts
    finally:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("alter system reset log_statement")
            conn.execute("alter system reset log_connections")
            conn.execute("select pg_reload_conf()")
        with log.open("rb") as file:
            file.seek(start)
            text = file.read().decode(errors="replace")
        # Our own reset connection and its three statements are not the sync's.
        counts["statements"] = len(STATEMENT_LINE.findall(text)) - 3
        counts["connections"] = len(CONNECTION_LINE.findall(text)) - 1


def server_cpu_seconds(server: PostgresServer) -> float:
    """CPU seconds the Postgres server has used: the postmaster's own and its exited children's (which it
    reaped), and those of its children alive now."""
    postmaster = int((server.data_dir / "data" / "postmaster.pid").read_text().split()[0])
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # a backend that has just exited
            continue
        fields = text[text.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        pid, parent = int(stat.parent.name), int(fields[1])
        if pid == postmaster:
            ticks += sum(map(int, fields[11:15]))  # utime, stime, cutime, cstime
        elif parent == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def cpu_used(server: PostgresServer) -> Iterator[dict[str, float]]:
    """CPU seconds of this process and of the Postgres server while the block runs, and those the machine had
    (its cores times the wall time)."""
    figures: dict[str, float] = {}
    process, postgres, wall = time.process_time(), server_cpu_seconds(server), time.perf_counter()
    try:
        yield figures
    finally:
        figures["process_s"] = time.process_time() - process
        figures["server_s"] = server_cpu_seconds(server) - postgres
        figures["available_s"] = (time.perf_counter() - wall) * (os.cpu_count() or 1)


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def slowest(steps: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(steps.items(), key=lambda item: -item[1])[:SLOWEST]


def seed_people(dsn: str, people: int) -> list[str]:
    """`people` new rows in the local DB, committed at once as an application's bulk import would."""
    ids = [str(uuid.uuid4()) for _ in range(people)]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("copy public.people (id, first_name, last_name, email, job_title, city) from stdin") as copy:
            for i, person_id in enumerate(ids):
                copy.write_row((person_id, f"Scale{i}", "Person", f"scale.{i}@example.com", "Tester", "Paris"))
    return ids


def edit_people(dsn: str, ids: list[str], title: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("update public.people set job_title = %s where id = any(%s::uuid[])", (title, ids))


def count_holding(dsn: str, title: str | None = None) -> int:
    """People in a Postgres store, or those whose job title is `title`."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select count(*) filter (where %s::text is null or job_title = %s) from public.people",
                           (title, title)).fetchone()
    assert row is not None
    return int(row[0])


def twenty_holding(twenty: StandinServer, title: str) -> int:
    """People in the Twenty stand-in whose job title is `title` (read after the run's requests are counted)."""
    with twenty.client() as client:
        response = client.get("/rest/people", params={"filter": f'jobTitle[eq]:"{title}"', "limit": 1})
        response.raise_for_status()
        return int(response.json()["totalCount"])


def bigquery_holding(bigquery: BigQueryStoreResource, title: str) -> int:
    """People in BigQuery's current-state table whose job title is `title`."""
    from google.cloud.bigquery import QueryJobConfig, ScalarQueryParameter

    with bigquery.get_client() as client:
        job = client.query(f"select count(*) as n from `{bigquery.project}.{bigquery.dataset}.people` "
                           "where job_title = @title",
                           job_config=QueryJobConfig(query_parameters=[ScalarQueryParameter("title", "STRING",
                                                                                            title)]))
        return int(next(iter(job.result()))["n"])


def measure_size(people: int, change_runs: int, with_twenty: bool, with_bigquery: bool) -> dict[str, Any]:
    """Every figure of one size; runs in its own process (the code location reads its environment once)."""
    with ExitStack() as stack:
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-"))
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        server = stack.enter_context(run_postgres(durable=True))
        local_dsn, supabase_dsn = server.create_database("local_db"), server.create_database("supabase")
        env = {"SYNC_HUB_DATABASE_URL": local_dsn, "LOCAL_DATABASE_URL": local_dsn,
               "SUPABASE_DATABASE_URL": supabase_dsn, "SUPABASE_SSLMODE": "disable", "DAGSTER_HOME": home}
        twenty, bigquery = None, None
        if with_twenty:
            from sync_pipeline.sandbox.twenty.server import run_standin

            twenty = stack.enter_context(run_standin(rate_limit_per_minute=UNLIMITED,
                                                     rate_limit_per_second=UNLIMITED,
                                                     startup_timeout=READY_SECONDS))
            env |= {"TWENTY_API_URL": twenty.base_url, "TWENTY_API_KEY": twenty.api_key,
                    "TWENTY_REQUESTS_PER_MINUTE": str(UNLIMITED)}
        if with_bigquery:
            from sync_pipeline.sandbox.bigquery_emulator import run_bigquery_emulator

            emulator = stack.enter_context(run_bigquery_emulator(startup_timeout=READY_SECONDS))
            env |= {"BIGQUERY_PROJECT": emulator.project, "BIGQUERY_DATASET": "crm_sync_scale",
                    "BIGQUERY_EMULATOR_URL": emulator.endpoint}
            from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource

            bigquery = BigQueryStoreResource(project=emulator.project, dataset="crm_sync_scale",
                                             api_endpoint=emulator.endpoint)
        # The code location reads which stores are configured when it is imported: set them first.
        os.environ.update(env)
        import dagster as dg

        from sync_pipeline.commands.install import install
        from sync_pipeline.definitions import defs

        install(lambda _line: None)
        job = defs.resolve_job_def("sync_with_safety_check")
        instance = stack.enter_context(dg.DagsterInstance.local_temp(tempdir=home))
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

        def gated_run() -> dict[str, float]:
            """Runs the job; returns each step's seconds."""
            result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=quiet)
            if not result.success:
                raise SystemExit(f"the gated run failed at {people:,} people (run {result.run_id})")
            return {event.step_key: event.step_success_data.duration_ms / 1000
                    for event in result.all_events
                    if event.event_type == dg.DagsterEventType.STEP_SUCCESS and event.step_key}

        ids = seed_people(local_dsn, people)
        rss = PeakRss()
        with rss.watching(), cpu_used(server) as cpu:
            first_seconds, first_steps = timed(gated_run)
        held = count_holding(supabase_dsn)
        assert held >= people, f"Supabase holds {held:,} people after the first sync of {people:,}"
        figures: dict[str, Any] = {"people": people, "first_sync_s": first_seconds,
                                   "first_sync_records_per_s": people / first_seconds,
                                   "first_sync_peak_rss_mib": rss.mib, "first_sync_steps_s": sum(first_steps.values()),
                                   "first_sync_slowest_steps": slowest(first_steps), "first_sync_cpu": cpu,
                                   "runs": []}
        for run in range(change_runs):
            title = f"Changed {run}"
            edit_people(local_dsn, ids[run * CHANGES:(run + 1) * CHANGES], title)
            requests_before = twenty.stats()["requests"] if twenty else 0
            with rss.watching(), statements_logged(server) as counts:
                seconds, steps = timed(gated_run)
            twenty_requests = twenty.stats()["requests"] - requests_before if twenty else None
            edited = {"Supabase": count_holding(supabase_dsn, title)}
            if twenty:
                edited["Twenty"] = twenty_holding(twenty, title)
            if bigquery:
                edited["BigQuery"] = bigquery_holding(bigquery, title)
            missing = {store: n for store, n in edited.items() if n != CHANGES}
            assert not missing, f"of the {CHANGES} edits, after the run: {missing}"
            figures["runs"].append({
                "seconds": seconds, "peak_rss_mib": rss.mib, **counts, "steps": len(steps),
                "slowest_steps": slowest(steps),
                "twenty_requests": twenty_requests})
        return figures


def run_size(people: int, change_runs: int, with_twenty: bool, with_bigquery: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one-size", str(people), "--change-runs", str(change_runs),
               *(["--twenty"] if with_twenty else []), *(["--bigquery"] if with_bigquery else [])]
    process = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    found = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode or not found:
        raise SystemExit(f"the size {people:,} failed (exit {process.returncode}):\n{process.stdout[-3000:]}")
    return json.loads(found[-1].removeprefix(RESULT_PREFIX))


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def print_table(results: list[dict[str, Any]], with_twenty: bool, stores: str) -> None:
    print(f"\n{'people':>10} {'first sync':>11} {'records/s':>10} {'peak RSS':>9} | "
          f"{'100 changes':>11} {'peak RSS':>9} {'statements':>10} {'connections':>11}"
          + (f" {'Twenty req':>10}" if with_twenty else ""))
    for r in results:
        runs = r["runs"]
        print(f"{r['people']:>10,} {r['first_sync_s']:>9.1f} s {r['first_sync_records_per_s']:>10,.0f} "
              f"{r['first_sync_peak_rss_mib']:>5.0f} MiB | {median_of(runs, 'seconds'):>9.2f} s "
              f"{median_of(runs, 'peak_rss_mib'):>5.0f} MiB {median_of(runs, 'statements'):>10,.0f} "
              f"{median_of(runs, 'connections'):>11,.0f}"
              + (f" {median_of(runs, 'twenty_requests'):>10,.0f}" if with_twenty else ""))
    print("(100-change figures: median of the runs; every run: "
          + "; ".join(f"{r['people']:,}: " + ", ".join(f"{run['seconds']:.2f}" for run in r["runs"]) + " s"
                      for r in results) + ")")
    for r in results:
        print(f"first sync at {r['people']:,}: {r['first_sync_s']:.1f} s, of which {r['first_sync_steps_s']:.1f} s "
              f"in steps (the rest: the run's start and Dagster's event log); slowest steps: "
              + ", ".join(f"{step} {sec:.1f} s" for step, sec in r["first_sync_slowest_steps"]))
    for r in results:
        cpu = r["first_sync_cpu"]
        used = cpu["process_s"] + cpu["server_s"]
        print(f"first sync at {r['people']:,}: CPU {cpu['process_s']:.1f} s in this process + {cpu['server_s']:.1f} s "
              f"in the Postgres server = {used:.1f} s of the {cpu['available_s']:.1f} s its {os.cpu_count()} cores "
              f"had ({used / cpu['available_s']:.0%}; {used / r['people'] * 1e6:,.0f} us per record)")
    for r in results:
        last = r["runs"][-1]
        print(f"slowest steps of the last 100-change run at {r['people']:,} ({last['steps']} steps, "
              f"{last['seconds']:.1f} s): " + ", ".join(f"{step} {sec:.1f} s" for step, sec in last["slowest_steps"]))
    smallest, largest = results[0], results[-1]
    if len(results) > 1:
        ratio = median_of(largest["runs"], "seconds") / median_of(smallest["runs"], "seconds")
        print(f"time(100 changes @ {largest['people']:,}) / time(100 changes @ {smallest['people']:,}) = "
              f"{ratio:.2f}  (goal <= 1.5 between 1M and 10k)")
    best = max(r["first_sync_records_per_s"] for r in results)
    print(f"first sync ({stores}, the whole gated run): best {best:,.0f} records/s (goal >= 5,000 on the local "
          f"stores); peak RSS at {largest['people']:,}: {largest['first_sync_peak_rss_mib']:,.0f} MiB "
          f"(goal < 1 GiB at 1M)")


@click.command()
@click.option("--sizes", default="10000,50000", show_default=True, help="people per store, comma-separated")
@click.option("--change-runs", default=3, show_default=True, help="100-change syncs per size (median)")
@click.option("--twenty", "with_twenty", is_flag=True, help="also the Twenty stand-in (a target of everything)")
@click.option("--bigquery", "with_bigquery", is_flag=True, help="also the BigQuery emulator")
@click.option("--one-size", type=int, hidden=True, help="internal: measure one size in this process")
def main(sizes: str, change_runs: int, with_twenty: bool, with_bigquery: bool, one_size: int | None) -> None:
    if one_size is not None:
        figures = measure_size(one_size, change_runs, with_twenty, with_bigquery)
        print(RESULT_PREFIX + json.dumps(figures), flush=True)
        return
    results = []
    for people in sorted(int(size) for size in sizes.split(",")):
        print(f"{people:,} people: first sync, then {change_runs} syncs of {CHANGES} changes…", flush=True)
        results.append(run_size(people, change_runs, with_twenty, with_bigquery))
    stores = "local DB -> hub -> Supabase" + (" + Twenty stand-in" if with_twenty else "") + (
        " + BigQuery emulator" if with_bigquery else "")
    print(f"\ngated job (sync_with_safety_check), {stores}, one Postgres server (fsync on)")
    print_table(results, with_twenty, stores)


if __name__ == "__main__":
    main()
