"""`sync-pipeline demo`: the sync's guarantees shown on a running sandbox.

1. A conflict: the same person edited in Supabase and in the local DB at once; the hub resolves it (last
   write wins, deterministic tiebreak) and logs both sides in `sync.conflicts`.
2. A replayed webhook: a delivery Twenty made is POSTed twice more, correctly signed; the receiver answers
   "duplicate" and the hub inbox keeps one row.
3. An invalid record: a person without a first name and with a malformed e-mail is quarantined with the
   reason, and the rest of the sync goes on. The consistency checks count it as quarantined (a warning), not
   as a difference: the sandbox stays safe. The demo prints the fix to make at the source (Supabase); the
   next sync captures the fixed row and takes it out of quarantine.
Then the gated sync (`sync_with_safety_check`: the blocking checks first, as every manual sync) is launched
through the running webserver's GraphQL API and the hub rows that prove each guarantee are printed, with where
to look in the UI.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from sync_pipeline.sandbox.launcher import (
    LOCATION_NAME,
    REPOSITORY_NAME,
    SandboxPaths,
    demo_id,
    graphql,
    read_sandbox_env,
)
from sync_pipeline.sandbox.twenty.seed import seed_id
from sync_pipeline.webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

CONFLICT_PERSON_EMAIL = "marie.curie@northwind.example.org"  # a demo row of the sandbox's Supabase
INVALID_PERSON_ID = demo_id("supabase:person:invalid")
# What makes the invalid person valid again, run at its source; `sync.quarantine` closes on the next sync.
FIX_INVALID_PERSON_SQL = (f"update public.people set first_name = 'Nobody', email = 'nobody@example.org' "
                          f"where id = '{INVALID_PERSON_ID}'")
SYNC_JOB = "sync_with_safety_check"  # every manual sync goes through the gate
TWENTY_PERSON_ID = seed_id("person", 0)  # the stand-in's first seeded person
RUN_TIMEOUT_SECONDS = 600


def run_demo(project_dir: Path) -> None:
    env = read_sandbox_env(project_dir)
    os.environ.update(env)
    ui_url = env.get("SYNC_SANDBOX_UI_URL")
    if not ui_url:
        raise SystemExit("the sandbox runs without its UI (--no-ui): start it with `bash scripts/sandbox.sh`")
    stamp = datetime.now().strftime("%H:%M:%S")

    _title("1. A conflict: the same person edited in Supabase and in the local DB at once")
    supabase_id, local_id = _edit_on_both_sides(env, stamp)

    _title("2. A replayed webhook: the same signed delivery POSTed twice")
    event_key = _replay_webhook(env, stamp)

    _title("3. An invalid record: a person without a first name and with a malformed e-mail")
    _insert_invalid_person(env["SUPABASE_DATABASE_URL"])

    _title(f"Running {SYNC_JOB} through the webserver's GraphQL API")
    run_id = _launch_sync(ui_url)
    status = _wait_for_run(ui_url, run_id)
    print(f"run {run_id}: {status}  ({ui_url}/runs/{run_id})")

    _title("What the hub recorded")
    _show_proof(env, supabase_id, local_id, event_key)
    _title("Where to look in the UI")
    print(f"""\
  The run and its logs            {ui_url}/runs/{run_id}
  Conflicts of people (metadata)  {ui_url}/assets/hub/people   (last_conflicts)
  Quarantined on capture          {ui_url}/assets/supabase/people_changes   (quarantined)
  Webhook hints re-read           {ui_url}/assets/twenty/people_changes
  Safety checks                   {ui_url}/assets/hub/people?view=checks""")
    _title("Fixing the quarantined record at its source")
    print(f"""\
  The invalid person stays in Supabase, and in quarantine, until it is fixed there: the sync never edits
  a source's record to make it valid. Meanwhile the checks count it as quarantined (a warning) on
  supabase/people consistent_with_hub and hub/people quarantine. Fix it in Supabase:

    source {SandboxPaths(project_dir.resolve()).env_file}
    psql "$SUPABASE_DATABASE_URL" -c "{FIX_INVALID_PERSON_SQL}"

  The next sync (the change-capture sensor starts one within a minute, or launch {SYNC_JOB}) captures the
  fixed row, closes its quarantine (sync.quarantine.resolved_at is set) and syncs it to every store. Check:

    psql "$SYNC_HUB_DATABASE_URL" -c "select record_id, reason, resolved_at from sync.quarantine where record_id = '{INVALID_PERSON_ID}'"
    .venv/bin/sync-pipeline safety""")


def _title(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _edit_on_both_sides(env: dict[str, str], stamp: str) -> tuple[str, str]:
    """Set one field to two different values, one per store, committed milliseconds apart."""
    with psycopg.connect(env["SUPABASE_DATABASE_URL"]) as supabase, \
            psycopg.connect(env["LOCAL_DATABASE_URL"]) as local:
        ids = []
        for conn in (supabase, local):
            row = conn.execute("select id from public.people where email = %s", (CONFLICT_PERSON_EMAIL,)).fetchone()
            if row is None:
                raise SystemExit(f"{CONFLICT_PERSON_EMAIL} is not in both stores yet: has the first sync run?")
            ids.append(str(row[0]))
        supabase.execute("update public.people set job_title = %s where id = %s",
                         (f"Chief Scientist (Supabase, {stamp})", ids[0]))
        local.execute("update public.people set job_title = %s where id = %s",
                      (f"Research Director (local DB, {stamp})", ids[1]))
        supabase.commit()
        local.commit()  # the later write: it should win
    print(f"{CONFLICT_PERSON_EMAIL}: job_title set in Supabase, then in the local DB")
    return ids[0], ids[1]


def _replay_webhook(env: dict[str, str], stamp: str) -> str:
    """Change a person in Twenty, wait for the delivery Twenty makes, then send that delivery twice more."""
    with httpx.Client(base_url=env["TWENTY_API_URL"], timeout=10,
                      headers={"Authorization": f"Bearer {env['TWENTY_API_KEY']}"}) as twenty:
        twenty.patch(f"/rest/people/{TWENTY_PERSON_ID}",
                     json={"jobTitle": f"Engineer ({stamp})"}).raise_for_status()
    delivered = _wait_for_delivery(env["SYNC_HUB_DATABASE_URL"], f"Engineer ({stamp})")
    body = json.dumps(delivered["payload"], separators=(",", ":"), ensure_ascii=False).encode()
    print(f"Twenty delivered person.updated for {TWENTY_PERSON_ID}; replaying it twice:")
    for attempt in (1, 2):
        timestamp = str(int(time.time() * 1000))  # a fresh signature: the receiver refuses stale ones
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(env["TWENTY_WEBHOOK_SECRET"], timestamp, body)}
        answer = httpx.post(env["SYNC_SANDBOX_WEBHOOK_URL"], content=body, headers=headers, timeout=10)
        print(f"  replay {attempt}: HTTP {answer.status_code} {answer.json()}")
    return delivered["event_key"]


def _wait_for_delivery(hub_dsn: str, job_title: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with psycopg.connect(hub_dsn, autocommit=True, row_factory=dict_row) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                """select event_key, payload from sync.inbox
                   where store = 'twenty' and entity = 'people' and store_record_id = %s
                     and payload -> 'record' ->> 'jobTitle' = %s""", (TWENTY_PERSON_ID, job_title)).fetchone()
            if row:
                return row
            time.sleep(0.2)
    raise SystemExit("Twenty's webhook did not reach the receiver: see .sandbox/logs/webhooks.log")


def _insert_invalid_person(supabase_dsn: str) -> None:
    """Written (again) on every demo, so every demo has a fresh change to quarantine."""
    with psycopg.connect(supabase_dsn) as conn:
        conn.execute(
            """insert into public.people (id, first_name, last_name, email)
               values (%s, null, 'Nobody', 'not-an-email')
               on conflict (id) do update set first_name = null, last_name = 'Nobody', email = 'not-an-email'""",
            (INVALID_PERSON_ID,))
    print(f"Supabase person {INVALID_PERSON_ID}: first_name null, email 'not-an-email'")


def _launch_sync(ui_url: str) -> str:
    data = graphql(f"{ui_url}/graphql", """
        mutation($selector: JobOrPipelineSelector!) {
          launchRun(executionParams: {selector: $selector, executionMetadata: {tags: [{key: "sync/trigger", value: "demo"}]}}) {
            __typename
            ... on LaunchRunSuccess { run { runId } }
            ... on PythonError { message }
            ... on RunConfigValidationInvalid { errors { message } }
          } }""", {"selector": {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME,
                                "jobName": SYNC_JOB}})
    launched = data["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"launchRun failed: {launched}")
    return launched["run"]["runId"]


def _wait_for_run(ui_url: str, run_id: str) -> str:
    """Poll until the run ends; a run queued behind a sensor's run waits its turn."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = graphql(f"{ui_url}/graphql", """query($id: ID!) { runOrError(runId: $id) {
                        ... on Run { status } } }""", {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run["status"]
        time.sleep(1)
    raise SystemExit(f"run {run_id} did not finish within {RUN_TIMEOUT_SECONDS} s")


def _show_proof(env: dict[str, str], supabase_id: str, local_id: str, event_key: str) -> None:
    with psycopg.connect(env["SYNC_HUB_DATABASE_URL"], row_factory=dict_row) as hub:
        conflict = hub.execute(
            """select c.id, c.detected_at, c.golden_store, c.incoming_store, c.winner_store, c.resolution,
                      c.differing_fields, c.golden_side -> 'data' ->> 'job_title' as golden_job_title,
                      c.incoming_side -> 'data' ->> 'job_title' as incoming_job_title
               from sync.conflicts c join sync.record_state s
                 on s.entity = c.entity and s.record_id = c.record_id
               where c.entity = 'people' and s.store = 'supabase' and s.store_record_id = %s
               order by c.id desc limit 1""", (supabase_id,)).fetchone()
        inbox = hub.execute("select id, kind, received_at, applied_at from sync.inbox "
                            "where store = 'twenty' and event_key = %s", (event_key,)).fetchall()
        quarantined = hub.execute(
            """select id, quarantined_at, reason, failures from sync.quarantine
               where store = 'supabase' and entity = 'people' and record_id = %s
               order by id desc limit 1""", (INVALID_PERSON_ID,)).fetchone()
    print("Conflict (sync.conflicts):")
    print(_indent(conflict) if conflict else "  none found: was the person synced before the edits?")
    with psycopg.connect(env["SUPABASE_DATABASE_URL"]) as supabase, \
            psycopg.connect(env["LOCAL_DATABASE_URL"]) as local:
        values = [_job_title(conn, row_id) for conn, row_id in ((supabase, supabase_id), (local, local_id))]
    print(f"  now in Supabase: {values[0]!r}; in the local DB: {values[1]!r}"
          f" ({'converged' if values[0] == values[1] else 'NOT converged'})")
    print(f"Replayed webhook (sync.inbox rows for {event_key}): {len(inbox)}")
    for row in inbox:
        print(_indent(row))
    print("Quarantine (sync.quarantine):")
    print(_indent(quarantined) if quarantined else "  none found")


def _job_title(conn: psycopg.Connection[Any], row_id: str) -> Any:
    row = conn.execute("select job_title from public.people where id = %s", (row_id,)).fetchone()
    if row is None:
        raise RuntimeError(f"person {row_id} is missing from {conn.info.dbname}")
    return row[0]


def _indent(row: dict[str, Any]) -> str:
    return "\n".join(f"  {name}: {value}" for name, value in row.items())
