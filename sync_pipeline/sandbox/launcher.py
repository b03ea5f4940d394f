"""`sync-pipeline sandbox`: the whole topology on this machine, in the Dagster UI, with one command.

Starts, under `<project>/.sandbox/` (kept across restarts):
  - PostgreSQL with two databases, `local_db` (the local DB, and the hub's `sync` schema) and `supabase`
    (playing Supabase), with the hub migrated, change capture installed and a few demo rows;
  - the BigQuery emulator, with a persistent data directory;
  - the Twenty CRM stand-in, seeded with a few thousand records, its state in a SQLite file;
  - the webhook receiver (`sync-pipeline webhooks`), registered with the stand-in;
then writes the environment to `.sandbox/sandbox.env` and `<project>/.env`, runs a first sync so the UI has
something to show, and serves `dagster dev`. Ctrl-C (or SIGTERM) stops everything it started.

Running it again reuses the data: seeds, webhook registration and migrations are idempotent.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from psycopg import sql

from sync_pipeline.sandbox.bigquery_emulator import run_bigquery_emulator
from sync_pipeline.sandbox.dagster_instance import DAGSTER_DB_NAME, postgres_instance_env, write_instance_yaml
from sync_pipeline.sandbox.postgres import free_port, run_postgres
from sync_pipeline.sandbox.processes import console_script, stop_dagster, terminate, wait_for_http
from sync_pipeline.sandbox.twenty.server import run_standin

if TYPE_CHECKING:
    import dagster as dg

    from sync_pipeline.hub.hub import Hub

LOCATION_NAME = "sync_pipeline"
REPOSITORY_NAME = "__repository__"
LOCAL_DB_NAME = "local_db"
SUPABASE_DB_NAME = "supabase"
BIGQUERY_PROJECT = "sandbox-project"
BIGQUERY_DATASET = "crm_sync"
TWENTY_API_KEY = "sandbox-twenty-key"
TWENTY_SEED: dict[str, Any] = {"seed_companies": 300, "seed_people": 2_000, "seed_opportunities": 600}
# Twenty Cloud allows 100 requests a minute per workspace. The sandbox's stand-in allows 1,200 so that its
# first sync (about 50 list pages of 60 records) is not throttled by the server; the real limit still
# applies to a real workspace.
TWENTY_SANDBOX_REQUESTS_PER_MINUTE = 1_200
WEBHOOK_DESCRIPTION = "sync_pipeline sandbox receiver"
# Ids of the demo rows: the same on every machine and every run, so seeding twice adds nothing.
DEMO_NAMESPACE = uuid.UUID("9a3d1f6e-5c2b-4e8a-b7d4-0f1e2d3c4b5a")


def demo_id(name: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, name))


@dataclass(frozen=True)
class SandboxPaths:
    """Where the sandbox keeps its state, all under `<project>/.sandbox/` except the project's `.env`."""

    project_dir: Path

    @property
    def root(self) -> Path:
        return self.project_dir / ".sandbox"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def bigquery(self) -> Path:
        return self.root / "bigquery"

    @property
    def twenty_state(self) -> Path:
        return self.root / "twenty.sqlite"

    @property
    def webhook_secret(self) -> Path:
        return self.root / "webhook_secret"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def env_file(self) -> Path:
        return self.root / "sandbox.env"

    @property
    def dotenv(self) -> Path:
        return self.project_dir / ".env"


def run_sandbox(project_dir: Path, port: int = 3000, ui: bool = True, dagster_storage: str = "sqlite") -> None:
    """Start the sandbox; with `ui`, serve Dagster until Ctrl-C, else sync once and stop. `dagster_storage`
    "postgres" runs the production instance (see `sandbox/dagster_instance.py`)."""
    paths = SandboxPaths(project_dir.resolve())
    for directory in (paths.root, paths.logs, paths.dagster_home):
        directory.mkdir(parents=True, exist_ok=True)
    # A script's background job starts with SIGINT ignored, and children would inherit that (the "SIGINT
    # trap"); with handlers installed here, Ctrl-C and SIGTERM raise KeyboardInterrupt and every child
    # starts with default signal handling.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            env = _start_stores(stack, paths, dagster_storage)
            if ui:
                env["SYNC_SANDBOX_UI_URL"] = f"http://127.0.0.1:{port}"
            _write_env(paths, env)
            sync_seconds, synced = _initial_sync(paths)
            if not ui:
                _say(f"sandbox: synced once in {sync_seconds:.1f} s (--no-ui); stopping")
                if not synced:
                    raise SystemExit(1)
                return
            dagster = _start_dagster(stack, paths, env, port)
            _say(_banner(paths, env, port, time.monotonic() - started, sync_seconds))
            dagster.wait()
            _say(f"sandbox: dagster dev exited with code {dagster.returncode}; stopping")
        except KeyboardInterrupt:
            _say("\nsandbox: stopping every process it started…")
        finally:
            # A second Ctrl-C must not cut the clean-up short and leave a server running.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _say("sandbox: stopped")


def _say(message: str) -> None:
    print(message, flush=True)


def _start_stores(stack: contextlib.ExitStack, paths: SandboxPaths, dagster_storage: str) -> dict[str, str]:
    """Every store, the receiver and the Dagster instance's configuration; returns the environment that
    points the code location and Dagster at them."""
    t0 = time.monotonic()
    postgres = stack.enter_context(run_postgres(paths.postgres, durable=True))
    local_dsn = postgres.create_database(LOCAL_DB_NAME)
    supabase_dsn = postgres.create_database(SUPABASE_DB_NAME)
    _say(f"sandbox: PostgreSQL on 127.0.0.1:{postgres.port} ({time.monotonic() - t0:.1f} s)")

    t0 = time.monotonic()
    emulator = stack.enter_context(run_bigquery_emulator(BIGQUERY_PROJECT, paths.bigquery))
    _say(f"sandbox: BigQuery emulator at {emulator.endpoint} ({time.monotonic() - t0:.1f} s)")

    t0 = time.monotonic()
    twenty = stack.enter_context(run_standin(
        api_key=TWENTY_API_KEY, state_file=str(paths.twenty_state),
        rate_limit_per_minute=TWENTY_SANDBOX_REQUESTS_PER_MINUTE, **TWENTY_SEED))
    _say(f"sandbox: Twenty stand-in at {twenty.base_url} ({time.monotonic() - t0:.1f} s; "
         f"{TWENTY_SANDBOX_REQUESTS_PER_MINUTE} requests/min, Twenty Cloud allows 100)")

    webhook_secret = _webhook_secret(paths)
    env = {
        "SYNC_HUB_DATABASE_URL": local_dsn,
        "LOCAL_DATABASE_URL": local_dsn,
        "SUPABASE_DATABASE_URL": supabase_dsn,
        "SUPABASE_SSLMODE": "disable",  # a loopback server without TLS; real Supabase requires it
        "TWENTY_API_URL": twenty.base_url,
        "TWENTY_API_KEY": TWENTY_API_KEY,
        "TWENTY_REQUESTS_PER_MINUTE": str(TWENTY_SANDBOX_REQUESTS_PER_MINUTE),
        "TWENTY_WEBHOOK_SECRET": webhook_secret,
        "BIGQUERY_PROJECT": emulator.project,
        "BIGQUERY_DATASET": BIGQUERY_DATASET,
        "BIGQUERY_EMULATOR_URL": emulator.endpoint,
        "DAGSTER_HOME": str(paths.dagster_home),
    }
    if dagster_storage == "postgres":
        postgres.create_database(DAGSTER_DB_NAME)
        env.update(postgres_instance_env(postgres))
    # The instance's configuration, from the project's dagster.yaml: DAGSTER_HOME must hold it.
    write_instance_yaml(paths.project_dir / "dagster.yaml", paths.dagster_home, dagster_storage)
    where = (f"Postgres database {DAGSTER_DB_NAME!r} (the production instance)" if dagster_storage == "postgres"
             else f"SQLite under {paths.dagster_home}")
    _say(f"sandbox: Dagster instance: runs, event logs and schedules in {where}")
    # The code location reads its settings when `sync_pipeline.definitions` is imported: set them first.
    os.environ.update(env)
    _install(local_dsn, supabase_dsn)

    receiver_url = _start_receiver(stack, paths, twenty.base_url)
    _register_webhook(twenty.client(), receiver_url, webhook_secret)
    env["SYNC_SANDBOX_WEBHOOK_URL"] = receiver_url
    return env


def _webhook_secret(paths: SandboxPaths) -> str:
    """A secret made on the first start and kept, so the stand-in's registration stays valid."""
    if not paths.webhook_secret.exists():
        paths.webhook_secret.write_text(secrets.token_hex(32))
        paths.webhook_secret.chmod(0o600)
    return paths.webhook_secret.read_text().strip()


def _install(local_dsn: str, supabase_dsn: str) -> None:
    """What `sync-pipeline install` does, then the demo rows."""
    from sync_pipeline.commands.install import install

    install(_say)
    _seed_demo_rows(supabase_dsn, SUPABASE_DEMO_ROWS)
    _seed_demo_rows(local_dsn, LOCAL_DEMO_ROWS)


# A few records created in each Postgres store (and not in Twenty), so the first sync visibly moves data
# in every direction. Both stores know the same companies under their own ids: the sync links them by
# domain. Column names are the canonical ones of `sync_pipeline.model.entities`.
SUPABASE_DEMO_ROWS: dict[str, list[dict[str, Any]]] = {
    "companies": [
        {"id": demo_id("supabase:company:northwind"), "name": "Northwind Traders",
         "domain_name": "https://northwind.example.org", "employees": 120, "address_city": "Lyon",
         "address_country": "France", "ideal_customer_profile": True},
    ],
    "people": [
        {"id": demo_id("supabase:person:marie"), "first_name": "Marie", "last_name": "Curie",
         "email": "marie.curie@northwind.example.org", "job_title": "Head of Research", "city": "Lyon",
         "company_id": demo_id("supabase:company:northwind")},
        {"id": demo_id("supabase:person:pierre"), "first_name": "Pierre", "last_name": "Curie",
         "email": "pierre.curie@northwind.example.org", "job_title": "Engineer", "city": "Lyon",
         "company_id": demo_id("supabase:company:northwind")},
    ],
    "opportunities": [
        {"id": demo_id("supabase:opportunity:northwind-renewal"), "name": "Northwind renewal",
         "amount": Decimal("48000.00"), "currency_code": "EUR", "stage": "PROPOSAL",
         "company_id": demo_id("supabase:company:northwind"),
         "point_of_contact_id": demo_id("supabase:person:marie")},
    ],
}
LOCAL_DEMO_ROWS: dict[str, list[dict[str, Any]]] = {
    "companies": [
        {"id": demo_id("local_db:company:contoso"), "name": "Contoso",
         "domain_name": "https://contoso.example.org", "employees": 850, "address_city": "Berlin",
         "address_country": "Germany", "ideal_customer_profile": False},
    ],
    "people": [
        {"id": demo_id("local_db:person:emmy"), "first_name": "Emmy", "last_name": "Noether",
         "email": "emmy.noether@contoso.example.org", "job_title": "CTO", "city": "Berlin",
         "company_id": demo_id("local_db:company:contoso")},
    ],
    "opportunities": [
        {"id": demo_id("local_db:opportunity:contoso-pilot"), "name": "Contoso pilot",
         "amount": Decimal("12500.50"), "currency_code": "EUR", "stage": "MEETING",
         "company_id": demo_id("local_db:company:contoso"),
         "point_of_contact_id": demo_id("local_db:person:emmy")},
    ],
}


def _seed_demo_rows(dsn: str, rows_by_table: dict[str, list[dict[str, Any]]]) -> None:
    """Insert the rows whose id is absent. A row the sync or a person has changed since is left alone."""
    with psycopg.connect(dsn) as conn:
        for table, rows in rows_by_table.items():
            for row in rows:
                conn.execute(
                    sql.SQL("insert into public.{} ({}) values ({}) on conflict (id) do nothing").format(
                        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, row)),
                        sql.SQL(", ").join(sql.Placeholder() * len(row))),
                    list(row.values()))


def _start_receiver(stack: contextlib.ExitStack, paths: SandboxPaths, twenty_url: str) -> str:
    """`sync-pipeline webhooks` in a subprocess on a free port; returns the URL Twenty should call."""
    port = free_port()
    log = stack.enter_context((paths.logs / "webhooks.log").open("ab"))
    process = subprocess.Popen([*console_script("sync-pipeline"), "webhooks", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                               start_new_session=True)  # stopped by us, after dagster dev
    stack.callback(terminate, process)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/healthz", process, paths.logs / "webhooks.log", timeout=30)
    _say(f"sandbox: webhook receiver at {url}/twenty (signed deliveries from {twenty_url})")
    return f"{url}/twenty"


def _register_webhook(twenty: httpx.Client, target_url: str, secret: str) -> None:
    """One webhook for the sandbox receiver: created once, re-pointed when the receiver's port changed."""
    with twenty:
        response = twenty.get("/rest/metadata/webhooks")
        response.raise_for_status()
        ours = [w for w in response.json() if w.get("description") == WEBHOOK_DESCRIPTION]
        wanted = {"targetUrl": target_url, "operations": ["*.*"], "secret": secret}
        if not ours:
            twenty.post("/rest/metadata/webhooks",
                        json={**wanted, "description": WEBHOOK_DESCRIPTION}).raise_for_status()
            return
        if any(ours[0].get(key) != value for key, value in wanted.items()):
            twenty.patch(f"/rest/metadata/webhooks/{ours[0]['id']}", json=wanted).raise_for_status()
        for extra in ours[1:]:  # left by an older start; two would deliver every event twice
            twenty.delete(f"/rest/metadata/webhooks/{extra['id']}").raise_for_status()


def _write_env(paths: SandboxPaths, env: dict[str, str]) -> None:
    """`.sandbox/sandbox.env` for the demo and the shell; the project's `.env`, which `dagster dev`, the
    `dagster` CLI and `sync-pipeline safety` load from the working directory. The same lines in both:
    `export NAME=value`, the value quoted by `shlex.quote`, which a shell sources and python-dotenv (what
    Dagster reads `.env` with) reads to the same values."""
    header = ("# Written by `sync-pipeline sandbox`: points sync_pipeline at the local sandbox. Rewritten on\n"
              "# every start; delete it (and set real values) to run against real services.\n"
              "# In a shell: source this file (every line is `export NAME=value`).\n")
    body = "".join(f"export {name}={_env_value(name, value)}\n" for name, value in env.items())
    for path in (paths.env_file, paths.dotenv):
        # Readable by its owner only, from the first byte: it holds the webhook secret.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # a file left by an older start keeps its mode otherwise
        with os.fdopen(descriptor, "w") as file:
            file.write(header + body)


def _env_value(name: str, value: str) -> str:
    """`value` quoted for the shell. A single quote, a backslash or `${` would read differently in a shell
    and in python-dotenv (which unescapes `\\` and expands `${...}`), so they are refused."""
    if "'" in value or "\\" in value or "${" in value:
        raise ValueError(f"{name}: a value with ', \\ or ${{ cannot be written to an env file both a shell and "
                         "python-dotenv read the same way")
    return shlex.quote(value)


def _initial_sync(paths: SandboxPaths) -> tuple[float, bool]:
    """Run the gated sync in this process on the sandbox's Dagster instance, so its run and the safety
    checks show in the UI."""
    import dagster as dg

    from sync_pipeline.definitions import defs
    from sync_pipeline.commands.safety import overall, run_checks

    _say("sandbox: first sync (sync_with_safety_check): the safety checks, then every store; the first one "
         "takes a while…")
    t0 = time.monotonic()
    from sync_pipeline.hub.hub import Hub

    with dg.DagsterInstance.get() as instance:
        result = execute_and_close(
            defs.resolve_job_def("sync_with_safety_check"), Hub(os.environ["SYNC_HUB_DATABASE_URL"]),
            instance=instance, tags={"sync/trigger": "sandbox start"},
            # Step-by-step events belong in the UI; the terminal gets warnings and errors only.
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        seconds = time.monotonic() - t0
        outcome = "succeeded" if result.success else "FAILED (open the run in the UI for the step that failed)"
        _say(f"sandbox: first sync {outcome} in {seconds:.1f} s, run {result.run_id}")
        # Every check once now, so the check dashboard is filled from the start (then hourly).
        lines = run_checks(defs, instance)
    verdict = overall(lines)
    _say(f"sandbox: safety checks: {verdict}; `sync-pipeline safety` prints them one by one")
    for line in lines:
        if line.status != "PASS":
            _say(f"  {line.status}  {line.asset} {line.check}: {line.reason}")
    return seconds, result.success and verdict != "UNSAFE"


def execute_and_close(job: dg.JobDefinition, hub: Hub, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """Execute a sync job in this process and close the hub's record of the run (`sync.runs`) with its
    outcome. The run-status sensors close the runs the daemon sees; a run executed in process before
    `dagster dev` is up (the sandbox's first sync) is one they never see, and would stay "running"."""
    result = job.execute_in_process(raise_on_error=False, **kwargs)
    try:
        hub.finish_run(result.run_id, "success" if result.success else "failure")
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more than its log record
        from sync_pipeline.redaction import redact_text

        _say(f"sandbox: could not close run {result.run_id} in the hub's run log: {type(exc).__name__}: "
             f"{redact_text(str(exc))}")
    return result


def _start_dagster(stack: contextlib.ExitStack, paths: SandboxPaths, env: dict[str, str],
                   port: int) -> subprocess.Popen[bytes]:
    """`dagster dev` on 127.0.0.1:`port`, its sensors and schedules on; stopped with SIGINT."""
    log_path = paths.logs / "dagster.log"
    log = stack.enter_context(log_path.open("ab"))
    process = subprocess.Popen(
        [*console_script("dagster"), "dev", "-w", str(paths.project_dir / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        # From DAGSTER_HOME: in the project dir it would warn that the project's dagster.yaml is not used
        # (its copy is) and load `.env`, which holds nothing `env` does not.
        cwd=paths.dagster_home, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
        # Its own session, so Ctrl-C reaches it through us, in order: dagster first, the stores after.
        start_new_session=True)
    stack.callback(stop_dagster, process)
    wait_for_http(f"http://127.0.0.1:{port}/server_info", process, log_path, timeout=120)
    _turn_on_automation(f"http://127.0.0.1:{port}/graphql")
    return process


def _turn_on_automation(graphql_url: str) -> None:
    """Start every sensor and schedule of the code location that is not running yet."""
    repository = {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME}
    listing = graphql(graphql_url, """
        query($repo: RepositorySelector!) { repositoryOrError(repositorySelector: $repo) {
          ... on Repository { sensors { name sensorState { status } }
                              schedules { name scheduleState { status } } } } }""", {"repo": repository})
    found = listing["repositoryOrError"]
    for sensor in found.get("sensors", []):
        if sensor["sensorState"]["status"] != "RUNNING":
            graphql(graphql_url, """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
                      __typename ... on PythonError { message } } }""",
                    {"s": {**repository, "sensorName": sensor["name"]}})
    for schedule in found.get("schedules", []):
        if schedule["scheduleState"]["status"] != "RUNNING":
            graphql(graphql_url, """mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) {
                      __typename ... on PythonError { message } } }""",
                    {"s": {**repository, "scheduleName": schedule["name"]}})


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a GraphQL query to the Dagster webserver; raises on transport or GraphQL errors."""
    response = httpx.post(url, json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def _banner(paths: SandboxPaths, env: dict[str, str], port: int, ready_seconds: float,
            sync_seconds: float) -> str:
    ui = f"http://127.0.0.1:{port}"
    return f"""
sync_pipeline sandbox is ready ({ready_seconds:.0f} s; first sync {sync_seconds:.0f} s)

  Dagster UI         {ui}
  Lineage per store  {ui}/locations/{LOCATION_NAME}/asset-groups/twenty   (also supabase, local_db, hub, bigquery)
  The sync job       {ui}/locations/{LOCATION_NAME}/jobs/sync_with_safety_check   ("Materialize all" runs a
                     sync gated by the safety checks: launch this one, not sync_job)
  Is it safe?        .venv/bin/sync-pipeline safety   (the checks, one line each, and the verdict)
  Runs               {ui}/runs

  The guarantees, live (in another terminal):   .venv/bin/sync-pipeline demo
  Environment (source it to use psql / the CLI): {paths.env_file}
      hub + local DB: {env['LOCAL_DATABASE_URL']}
      Supabase:       {env['SUPABASE_DATABASE_URL']}
      Twenty:         {env['TWENTY_API_URL']}  (API key {TWENTY_API_KEY})
  Logs: {paths.logs}/   Data: {paths.root}/

Ctrl-C stops everything.
"""


def read_sandbox_env(project_dir: Path) -> dict[str, str]:
    """The environment a started sandbox wrote (`.sandbox/sandbox.env`), for the demo."""
    env_file = SandboxPaths(project_dir.resolve()).env_file
    if not env_file.exists():
        raise FileNotFoundError(f"{env_file} not found: start the sandbox first (bash scripts/sandbox.sh)")
    from dotenv import dotenv_values

    return {name: value for name, value in dotenv_values(env_file).items() if value is not None}
