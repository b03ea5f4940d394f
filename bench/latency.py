"""Latency of the running sandbox: from a commit in the local DB to the change visible in every Postgres store
(the local DB, Supabase) and in BigQuery, with the sandbox's Dagster daemon doing the work (the sensors and
schedules it turns on), as a person would see it.

By default it starts a sandbox of its own (`sync-pipeline sandbox --port N`) in a temporary project
directory (copies of workspace.yaml and dagster.yaml: its own `.sandbox/`, nothing of the project's), waits
for it to be ready, measures, then stops it with Ctrl-C's signal and deletes the directory. `--attach`
measures the sandbox already running from this directory instead (started with `bash scripts/sandbox.sh`)
and leaves it running.

The measurement: `--people` people created in the local DB and waited for everywhere (not timed), then
`--changes` edits, one every `--every` seconds (each a transaction changing one person's job title to a
marker of its own), while every `--poll` seconds one query to Supabase and one to BigQuery look for the
markers. A change's latency is from just after its commit to the first poll that finds it in both. Prints
every latency, p50 and p95 (nearest rank), and the goal p95 <= 15 s beside them; then, from the Dagster
instance, where the seconds went: per change, how long until a run asked for it (the sensor's tick, or the
run of the same selection it waited for), and per run of the gated job, its phases (queued, worker start,
the gate, the sync up to its last publish, the checks and verdict after it).

    .venv/bin/python bench/latency.py [--changes 8] [--every 7] [--port 3300] [--timeout 240]
    .venv/bin/python bench/latency.py --attach     # a sandbox running from this directory
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import click
import httpx
import psycopg

from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.sandbox.launcher import read_sandbox_env
from sync_pipeline.sandbox.processes import wait_or_kill

PROJECT_DIR = Path(__file__).resolve().parent.parent
READY_LINE = "sync_pipeline sandbox is ready"
GOAL_P95_SECONDS = 15.0
STOP_SECONDS = 120


@dataclass
class Change:
    email: str
    marker: str
    committed_at: float
    committed_wall: float  # the same instant on the wall clock, which Dagster's records use
    seen: dict[str, float] = field(default_factory=dict)  # store -> first poll that found the marker

    def latency(self, stores: tuple[str, ...]) -> float | None:
        if not all(store in self.seen for store in stores):
            return None
        return max(self.seen[store] for store in stores) - self.committed_at


class Stores:
    """Reads what Supabase and BigQuery hold for the bench's people, one query each per poll."""

    NAMES = ("supabase", "bigquery")

    def __init__(self, env: dict[str, str]) -> None:
        self.local_dsn = env["LOCAL_DATABASE_URL"]
        self.supabase_dsn = env["SUPABASE_DATABASE_URL"]
        resource = BigQueryStoreResource(project=env["BIGQUERY_PROJECT"], dataset=env["BIGQUERY_DATASET"],
                                         api_endpoint=env.get("BIGQUERY_EMULATOR_URL"))
        self._client_context = resource.get_client()
        self.bigquery = self._client_context.__enter__()
        self.people_table = f"`{env['BIGQUERY_PROJECT']}.{env['BIGQUERY_DATASET']}.people`"

    def close(self) -> None:
        self._client_context.__exit__(None, None, None)

    def titles(self, emails: list[str]) -> dict[str, dict[str, str | None]]:
        """Per store, each e-mail's job title (absent: the person is not there yet)."""
        from google.cloud import bigquery

        with psycopg.connect(self.supabase_dsn) as conn:
            supabase: dict[str, str | None] = dict(conn.execute("select email, job_title from public.people where email = any(%s)",
                                         (emails,)).fetchall())
        job = self.bigquery.query(
            f"select email, job_title from {self.people_table} where email in unnest(@emails)",
            job_config=bigquery.QueryJobConfig(query_parameters=[
                bigquery.ArrayQueryParameter("emails", "STRING", emails)]))
        warehouse = {row["email"]: row["job_title"] for row in job.result()}
        return {"supabase": supabase, "bigquery": warehouse}


def nearest_rank(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def create_people(stores: Stores, run: str, people: int, timeout: float) -> list[str]:
    """New people in the local DB, waited for in every store, so the edits measure updates only."""
    emails = [f"latency.{run}.{i}@example.com" for i in range(people)]
    with psycopg.connect(stores.local_dsn) as conn:
        for i, email in enumerate(emails):
            conn.execute("insert into public.people (id, first_name, last_name, email, job_title) "
                         "values (%s, %s, %s, %s, %s)", (str(uuid.uuid4()), f"Latency{i}", run, email, "created"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = stores.titles(emails)
        if all(len(held[store]) == people for store in Stores.NAMES):
            return emails
        time.sleep(2)
    raise SystemExit(f"the {people} new people did not reach every store within {timeout:.0f} s")


def measure(stores: Stores, emails: list[str], changes: int, every: float, poll: float,
            timeout: float) -> list[Change]:
    made: list[Change] = []
    next_change = time.monotonic()
    deadline: float | None = None
    while True:
        now = time.monotonic()
        if len(made) < changes and now >= next_change:
            email = emails[len(made) % len(emails)]
            marker = f"edit {len(made)} {uuid.uuid4().hex[:8]}"
            with psycopg.connect(stores.local_dsn) as conn:
                conn.execute("update public.people set job_title = %s where email = %s", (marker, email))
            made.append(Change(email, marker, time.monotonic(), time.time()))
            print(f"  committed change {len(made)}/{changes}", flush=True)
            next_change = now + every
            if len(made) == changes:
                deadline = time.monotonic() + timeout
        held = stores.titles(emails)
        polled = time.monotonic()
        for change in made:
            for store in Stores.NAMES:
                if store not in change.seen and held[store].get(change.email) == change.marker:
                    change.seen[store] = polled
        # A later edit of the same person hides an earlier marker: there are more people than changes.
        if len(made) == changes and all(c.latency(Stores.NAMES) is not None for c in made):
            return made
        if deadline is not None and time.monotonic() > deadline:
            return made
        time.sleep(poll)


PHASES = ("queued", "worker start", "gate", "sync to last publish", "checks after")
WHOLE_JOB_TRIGGERS = ("poll", "manual", "sandbox start")  # runs of every asset: they carry every change


@dataclass
class Run:
    trigger: str
    changed: str
    marks: list[float]  # wall clock: created, dequeued, worker started, gate done, last publish done, ended

    @property
    def phases(self) -> dict[str, float]:
        return {phase: b - a for phase, a, b in zip(PHASES, self.marks, self.marks[1:])}

    def carries(self, change: Change, changed: str) -> bool:
        """Whether this run's capture (right after its gate) read the change."""
        covers = changed in self.changed.split(",") or self.trigger in WHOLE_JOB_TRIGGERS
        return covers and self.marks[3] >= change.committed_wall


def change_phases(change: Change, run: Run) -> dict[str, float]:
    """A change's wait until its run published, cut at the run's marks: until a run asked for it (the sensor's
    tick, or a running run it waited for), then the run's own phases from the commit on."""
    commit = change.committed_wall
    phases = {"until a run asked": max(0.0, run.marks[0] - commit)}
    phases.update({phase: max(0.0, b - max(a, commit))
                   for phase, a, b in zip(PHASES[:4], run.marks, run.marks[1:5])})
    return phases


def gated_runs(env: dict[str, str], since: float, timeout: float) -> list[Run]:
    """The runs of the gated job that ended after `since` (wall clock; one queued before it may read its
    first changes), with their phases in seconds, read from the sandbox's Dagster instance once they have
    ended (waiting at most `timeout`)."""
    import dagster as dg
    from dagster._core.events import DagsterEventType as Event

    from sync_pipeline.defs.assets import publish_key
    from sync_pipeline.model.entities import ENTITIES
    from sync_pipeline.stores.registry import STORES

    publish_steps = {"__".join(publish_key(s.key, e).path) for s in STORES if s.publishes for e in ENTITIES}
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})  # a Postgres instance reads them
    runs = []
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs_filter = dg.RunsFilter(job_name="sync_with_safety_check",
                                    created_after=datetime.fromtimestamp(since - timeout, timezone.utc))
        deadline = time.monotonic() + timeout
        while (any(not r.dagster_run.is_finished for r in instance.get_run_records(runs_filter))
               and time.monotonic() < deadline):
            time.sleep(2)
        records = instance.get_run_records(runs_filter)
        for record in records:
            created = record.create_timestamp.timestamp()
            at: dict[str, float] = {}
            published = None
            for entry in instance.all_logs(record.dagster_run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type in (Event.RUN_STARTING, Event.RUN_START, Event.RUN_SUCCESS, Event.RUN_FAILURE):
                    at.setdefault(event.event_type.value, entry.timestamp)
                elif event.event_type in (Event.STEP_SUCCESS, Event.STEP_FAILURE):
                    if event.step_key == "safety_gate":
                        at["gate"] = entry.timestamp
                    elif event.step_key in publish_steps:
                        published = entry.timestamp
            end = at.get(Event.RUN_SUCCESS.value) or at.get(Event.RUN_FAILURE.value)
            found = [created, at.get(Event.RUN_STARTING.value), at.get(Event.RUN_START.value), at.get("gate"),
                     published, end]
            marks = [mark for mark in found if mark is not None]
            if len(marks) < len(found) or marks[-1] < since:
                continue  # still going, stopped before it published, or over before the first change
            tags = record.dagster_run.tags
            runs.append(Run(tags.get("sync/trigger", ""), tags.get("sync/changed", ""), marks))
    return sorted(runs, key=lambda run: run.marks[3])


def print_where_the_seconds_went(made: list[Change], runs: list[Run], changed: str) -> None:
    print("\nwhere the seconds went, per change (commit -> its run published; the poll adds up to a second):")
    per_change = []
    for i, change in enumerate(made, 1):
        run = next((run for run in runs if run.carries(change, changed)), None)
        if run is None:
            print(f"  change {i}: no finished run read it")
            continue
        phases = change_phases(change, run)
        per_change.append(phases)
        print(f"  change {i}: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases.items())
              + f" (a {run.trigger} run)")
    if per_change:
        print("  median: " + ", ".join(f"{phase} {statistics.median(p[phase] for p in per_change):.1f} s"
                                       for phase in per_change[0]))
    print("per run of the gated job (the checks after the last publish hold the queue's one slot):")
    for run in runs:
        print(f"  {datetime.fromtimestamp(run.marks[0]).strftime('%H:%M:%S')} {run.trigger} {run.changed}: "
              + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in run.phases.items()))
    if runs:
        print("  median: " + ", ".join(
            f"{phase} {statistics.median(run.phases[phase] for run in runs):.1f} s" for phase in PHASES))


@contextlib.contextmanager
def own_sandbox(port: int, ready_timeout: float) -> Iterator[dict[str, str]]:
    """A sandbox in a temporary project directory; stopped (Ctrl-C's signal) and deleted on exit."""
    directory = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    directory.chmod(0o755)  # as root the sandbox's Postgres runs as `postgres`, which must reach its data
    for name in ("workspace.yaml", "dagster.yaml"):
        shutil.copyfile(PROJECT_DIR / name, directory / name)
    log_path = directory / "sandbox.out"
    script = Path(sys.executable).with_name("sync-pipeline")
    command = [str(script), "sandbox", "--port", str(port)]
    print(f"starting the sandbox in {directory} (its output: {log_path}); the first sync takes a while…",
          flush=True)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    process = subprocess.Popen(command, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True, text=True)
    ready = threading.Event()
    log = log_path.open("w")
    reader = threading.Thread(target=_copy_output, args=(process.stdout, log, ready), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready.wait(1):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the sandbox did not get ready (exit code {process.poll()}, waited at most "
                                 f"{ready_timeout:.0f} s); its output ends with:\n"
                                 + log_path.read_text(errors="replace")[-2000:])
        yield read_sandbox_env(directory)
    finally:
        print("stopping the sandbox…", flush=True)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        wait_or_kill(process, STOP_SECONDS)
        reader.join(timeout=5)
        log.close()
        _wait_for_leftovers(directory)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_leftovers(directory: Path, timeout: float = 60) -> None:
    """Dagster's code servers outlive `dagster dev` until their heartbeat times out (30-45 s); wait for
    every process whose command line names the sandbox's directory, then stop any still there."""
    def leftovers() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(os.getpid()):
                with contextlib.suppress(OSError):
                    if str(directory).encode() in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
        return found

    deadline = time.monotonic() + timeout
    while leftovers() and time.monotonic() < deadline:
        time.sleep(2)
    # Some linger past their heartbeat and would write into the directory after it is deleted.
    for _ in range(5):
        if not (pids := leftovers()):
            return
        for pid in pids:
            print(f"stopping process {pid}, left by the sandbox", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        time.sleep(3)


def _copy_output(stream: IO[str] | None, log: IO[str], ready: threading.Event) -> None:
    assert stream is not None
    for line in stream:
        log.write(line)
        log.flush()
        if READY_LINE in line:
            ready.set()


@contextlib.contextmanager
def attached_sandbox() -> Iterator[dict[str, str]]:
    env = read_sandbox_env(Path.cwd())
    ui = env.get("SYNC_SANDBOX_UI_URL")
    if not ui:
        raise SystemExit("the sandbox in this directory runs without its UI (--no-ui): no daemon to measure")
    try:
        httpx.get(f"{ui}/server_info", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise SystemExit(f"no sandbox answers at {ui}: start it with `bash scripts/sandbox.sh` ({exc})") from exc
    yield env


@click.command()
@click.option("--changes", default=8, show_default=True, help="edits committed in the local DB")
@click.option("--every", default=7.0, show_default=True, help="seconds between two edits")
@click.option("--people", default=10, show_default=True, help="people created for the edits (>= changes "
              "keeps each marker visible)")
@click.option("--poll", default=1.0, show_default=True, help="seconds between two looks at the stores")
@click.option("--timeout", default=240.0, show_default=True, help="seconds to wait for the last edit")
@click.option("--port", default=3300, show_default=True, help="the Dagster UI of the sandbox it starts")
@click.option("--ready-timeout", default=900.0, show_default=True, help="seconds for the sandbox to start")
@click.option("--attach", is_flag=True, help="measure the sandbox already running from this directory")
def main(changes: int, every: float, people: int, poll: float, timeout: float, port: int,
         ready_timeout: float, attach: bool) -> None:
    if people < changes:
        raise click.UsageError("--people must be at least --changes: a second edit of a person hides the first")
    sandbox = attached_sandbox() if attach else own_sandbox(port, ready_timeout)
    with sandbox as env:
        stores = Stores(env)
        try:
            run = uuid.uuid4().hex[:8]
            emails = create_people(stores, run, people, timeout)
            print(f"{people} people created and synced everywhere; now {changes} edits, one every {every:g} s",
                  flush=True)
            began, load = time.time(), os.getloadavg()[0]
            made = measure(stores, emails, changes, every, poll, timeout)
        finally:
            stores.close()
        runs = gated_runs(env, began, timeout)
    latencies = [latency for c in made if (latency := c.latency(Stores.NAMES)) is not None]
    print("\ncommit in the local DB -> visible in Supabase and BigQuery (the local DB holds it at commit), "
          f"polled every {poll:g} s; the machine's load average {load:.1f} when the edits began, "
          f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores):")
    for i, change in enumerate(made, 1):
        where = ", ".join(f"{store} {change.seen[store] - change.committed_at:.1f} s" if store in change.seen
                          else f"{store} not within {timeout:.0f} s" for store in Stores.NAMES)
        print(f"  change {i}: {where}")
    if len(latencies) < len(made):
        print(f"{len(made) - len(latencies)} of {len(made)} changes were not visible everywhere in time")
    if latencies:
        p50, p95 = nearest_rank(latencies, 50), nearest_rank(latencies, 95)
        verdict = "met" if p95 <= GOAL_P95_SECONDS and len(latencies) == len(made) else "MISSED"
        print(f"p50 {p50:.1f} s  p95 {p95:.1f} s  max {max(latencies):.1f} s over {len(latencies)} changes "
              f"(goal p95 <= {GOAL_P95_SECONDS:g} s: {verdict})")
    print_where_the_seconds_went(made, runs, "local_db:people")


if __name__ == "__main__":
    main()
