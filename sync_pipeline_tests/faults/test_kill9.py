"""kill -9 of a sync at random points (issue 14): a sync process is killed a random moment into a step drawn
at random among each kind of step (a capture, a resolve, a publish to Postgres, to Twenty, to BigQuery), with
new edits in every source between kills; a clean run afterwards converges, losing, duplicating and changing
nothing."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg

from sync_pipeline_tests.faults.helpers import FourStores, assert_stores_match_hub, sync_all
from sync_pipeline_tests.helpers import insert_person

ENTITY_NAMES = ("companies", "people", "opportunities")
# One kill in each kind of step: {entity} and {store} are drawn at random.
KILL_IN = ("capture {store} {entity}", "resolve {entity}", "publish {store} {entity}", "publish twenty {entity}",
           "publish bigquery {entity}")
SECONDS_TO_A_STEP = 120  # a loaded CI machine; an idle one takes a few seconds for a whole run
PROJECT = Path(__file__).resolve().parents[2]


def _edit_every_source(topology, twenty_client, round_: int) -> None:
    """New and changed records in the local DB, Supabase and Twenty, so each run has work at every step."""
    with psycopg.connect(topology.local_dsn) as conn:
        company = str(uuid.uuid4())
        conn.execute("""insert into companies (id, name, domain_name, ideal_customer_profile)
                        values (%s, %s, %s, true)""", (company, f"Co {round_}", f"https://co{round_}.example"))
        for n in range(6):
            insert_person(conn, first_name=f"Local{round_}-{n}", company_id=company)
        conn.execute("""insert into opportunities (id, name, amount, currency_code, stage, company_id)
                        values (%s, %s, 1000, 'USD', 'NEW', %s)""", (str(uuid.uuid4()), f"Deal {round_}", company))
        conn.execute("update people set city = %s where id in (select id from people order by id limit 4)",
                     (f"Local city {round_}",))
    with psycopg.connect(topology.supabase_dsn) as conn:
        for n in range(6):
            insert_person(conn, first_name=f"Supa{round_}-{n}")
        conn.execute("update people set job_title = %s where id in (select id from people order by id desc limit 4)",
                     (f"Title {round_}",))
    twenty_client.batch_create("people", [
        {"name": {"firstName": f"Twenty{round_}-{n}"}, "emails": {"primaryEmail": f"t{round_}-{n}@example.com"}}
        for n in range(4)])


def _start_sync_process() -> subprocess.Popen[str]:
    """A sync process that imports its modules, then waits for its configuration (see sync_process.py)."""
    return subprocess.Popen([sys.executable, "-m", "sync_pipeline_tests.faults.sync_process"], cwd=PROJECT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _run_and_kill(process: subprocess.Popen[str], config: dict[str, str], at_step: str, delay: float) -> str:
    """Start the sync of a started process, kill -9 it `delay` seconds after `at_step` starts; returns the
    step it was in (or 'finished' when the process ended first)."""
    assert process.stdin is not None
    process.stdin.write(json.dumps(config) + "\n")
    process.stdin.close()
    lines: queue.Queue[str | None] = queue.Queue()

    def read_lines() -> None:
        for line in process.stdout or []:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_lines, daemon=True).start()
    step = None
    try:
        while (line := lines.get(timeout=SECONDS_TO_A_STEP)) is not None:
            step = line.removeprefix("step ").strip()
            if step == at_step:
                try:
                    process.wait(timeout=delay)  # the step runs for `delay` seconds, then the kill
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    return step
        assert process.wait() == 0, process.stderr.read() if process.stderr else ""
        return "finished"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_sync_killed_at_random_points_converges_on_a_clean_run(stores: FourStores, topology, twenty_client,
                                                                twenty_standin, bigquery_emulator):
    config = {"local_dsn": topology.local_dsn, "supabase_dsn": topology.supabase_dsn,
              "twenty_url": twenty_standin.base_url, "twenty_key": twenty_standin.api_key,
              "bigquery_project": bigquery_emulator.project, "bigquery_endpoint": bigquery_emulator.endpoint,
              "bigquery_dataset": stores.bigquery.dataset_id}
    rng = random.Random(14)
    killed_at = []
    processes = [_start_sync_process()]
    try:
        for round_, kind in enumerate(KILL_IN):
            at_step = kind.format(entity=rng.choice(ENTITY_NAMES), store=rng.choice(("local_db", "supabase")))
            _edit_every_source(topology, twenty_client, round_)
            if round_ + 1 < len(KILL_IN):
                processes.append(_start_sync_process())  # starts up while this round's sync runs
            run_config = {**config, "run_id": f"killed-{round_}"}
            killed_at.append(_run_and_kill(processes[round_], run_config, at_step, rng.uniform(0.0, 0.3)))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    assert sum(point != "finished" for point in killed_at) >= len(KILL_IN) - 1, killed_at

    sync_all(stores.hub, stores.all, "clean-1")
    settled = sync_all(stores.hub, stores.all, "clean-2")  # converged: nothing left to do
    assert all(stats.applied == 0 for key, stats in settled.items() if key[0] in ("resolve", "publish")), \
        {key: stats for key, stats in settled.items() if key[0] in ("resolve", "publish")}
    people = stores.hub.golden_snapshot("people")
    assert sum(data is not None for _, data in people.values()) == len(KILL_IN) * 16, killed_at
    assert_stores_match_hub(stores.hub, stores.all)
