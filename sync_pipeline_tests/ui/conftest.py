"""A real `dagster dev` on a free port, pointed at the test session's servers, and a headless Chromium.

Every store is configured and installed (the Postgres stores' change capture, BigQuery's dataset), so a
sync through this server is SAFE. The tests launch every run themselves: the schedules and the sensors that
launch runs are stopped once the server is up (see `_stop_launching_automation`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Iterator

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from sync_pipeline.hub.hub import Hub
from sync_pipeline.sandbox.bigquery_emulator import BigQueryEmulator
from sync_pipeline.sandbox.postgres import PostgresServer, free_port
from sync_pipeline.sandbox.twenty.server import StandinServer
from sync_pipeline.stores.bigquery import BigQueryStore
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline_tests.fixtures.bigquery import emulator_client
from sync_pipeline_tests.helpers import insert_person

PROJECT_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts" / "ui"
LOCATION_NAME = "sync_pipeline"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# `dagster dev` loads the code location in a subprocess: seconds on an idle machine, but it once took more
# than 90 s on a loaded 2-core CI machine. The wait polls and stops as soon as the process dies.
DAGSTER_READY_SECONDS = 600
# A UI test's time limit includes its fixtures' set-up (pytest-timeout covers set-up, call and tear-down):
# the first one starts `dagster dev`, and the session's servers if they are not running yet.
UI_TEST_TIMEOUT_SECONDS = DAGSTER_READY_SECONDS + 600
# A run (a sync is a few dozen steps in one process) takes 15-40 s here; sized for a loaded 2-core CI machine.
RUN_TIMEOUT_SECONDS = 300
# The interval between two looks at a run's status (one GraphQL query), not a wait: a run's end is seen
# within it, and the tests wait for half a dozen runs.
POLL_SECONDS = 0.5
ACTIVE_RUN_STATUSES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Each phase's report on the test item, so the `page` fixture can screenshot a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The UI tests get UI_TEST_TIMEOUT_SECONDS unless they set a limit of their own."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UI_TEST_TIMEOUT_SECONDS))


@dataclass
class DagsterUi:
    url: str
    log_path: Path
    local_dsn: str
    supabase_dsn: str

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}},
                              timeout=30)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


@pytest.fixture(scope="module")
def dagster_ui(postgres_server: PostgresServer, bigquery_emulator: BigQueryEmulator,
               twenty_standin: StandinServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUi]:
    """`dagster dev` with every store configured and installed (as `sync-pipeline install` does): its own
    databases, dataset and DAGSTER_HOME, the Twenty stand-in back to its seed data."""
    names = (f"ui_local_{os.getpid()}", f"ui_supabase_{os.getpid()}")
    local_dsn, supabase_dsn = (postgres_server.create_database(name) for name in names)
    hub = Hub(local_dsn)
    hub.migrate()
    for store_name, dsn in (("local_db", local_dsn), ("supabase", supabase_dsn)):
        PostgresStore(store_name, dsn, id_map=hub.id_map(store_name)).install()
    with psycopg.connect(supabase_dsn) as conn:
        insert_person(conn, first_name="Grace", last_name="Hopper")  # so the first sync moves a record
    # Without its dataset BigQuery's connection check fails: every sync fails, and the verdict is UNSAFE.
    dataset = f"ui_{os.getpid()}"
    bigquery_client = emulator_client(bigquery_emulator)
    BigQueryStore(bigquery_client, dataset).install()
    twenty_standin.reset(records=True)  # other tests of the session may have left records there

    workdir = tmp_path_factory.mktemp("dagster_ui")
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(PROJECT_DIR / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "SYNC_HUB_DATABASE_URL": local_dsn,
        "LOCAL_DATABASE_URL": local_dsn,
        "SUPABASE_DATABASE_URL": supabase_dsn,
        "SUPABASE_SSLMODE": "disable",
        "TWENTY_API_URL": twenty_standin.base_url,
        "TWENTY_API_KEY": twenty_standin.api_key,
        "TWENTY_WEBHOOK_SECRET": "ui-test-secret",
        "BIGQUERY_PROJECT": bigquery_emulator.project,
        "BIGQUERY_DATASET": dataset,
        "BIGQUERY_EMULATOR_URL": bigquery_emulator.endpoint,
    }
    port = free_port()
    log_path = workdir / "dagster.log"
    with log_path.open("wb") as log:
        # cwd is the temp dir so that a sandbox's `.env` in the project dir is not loaded.
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(PROJECT_DIR / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ui = DagsterUi(f"http://127.0.0.1:{port}", log_path, local_dsn, supabase_dsn)
    try:
        _wait_until_serving(ui, process)
        _stop_launching_automation(ui)
        yield ui
    finally:
        process.send_signal(signal.SIGINT)  # dagster dev stops its webserver, daemon and code servers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for name in names:
            postgres_server.drop_database(name)
        bigquery_client.delete_dataset(f"{bigquery_client.project}.{dataset}", delete_contents=True,
                                       not_found_ok=True)
        bigquery_client.close()


def _stop_launching_automation(ui: DagsterUi) -> None:
    """Stop every schedule, and every sensor that launches runs (the CDC and inbox sensors, the verdict after
    the checks); the sensors that only react to runs (closing the hub's run record, alerts) keep running.
    Then wait until the runs they launched meanwhile (the CDC sensor syncs Grace at start-up) have finished.

    What the tests check depends on which runs ran in which order: a sensor's or schedule's run queued
    behind a test's run changes what its verdict reads (see test_dagster_ui.py), and the checks of a run
    still going read "In progress". So the tests launch every run themselves, as the automation would."""
    repository = ui.graphql("""query($selector: RepositorySelector!) {
        repositoryOrError(repositorySelector: $selector) {
            ... on Repository { sensors { name sensorState { id status } targets { pipelineName } }
                                schedules { name scheduleState { id status } } } } }""",
                            {"selector": {"repositoryLocationName": LOCATION_NAME,
                                          "repositoryName": "__repository__"}})["repositoryOrError"]
    for sensor in repository["sensors"]:
        if sensor["targets"] and sensor["sensorState"]["status"] == "RUNNING":
            result = ui.graphql("""mutation($id: String) { stopSensor(id: $id) { __typename
                ... on StopSensorMutationResult { instigationState { status } }
                ... on PythonError { message } } }""",
                {"id": sensor["sensorState"]["id"]})["stopSensor"]
            assert result.get("instigationState", {}).get("status") == "STOPPED", (sensor["name"], result)
    for schedule in repository["schedules"]:
        if schedule["scheduleState"]["status"] == "RUNNING":
            result = ui.graphql("""mutation($id: String) { stopRunningSchedule(id: $id) { __typename
                ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }""",
                {"id": schedule["scheduleState"]["id"]})["stopRunningSchedule"]
            assert result.get("scheduleState", {}).get("status") == "STOPPED", (schedule["name"], result)
    # A sensor tick under way when it was stopped may still submit its run: look again after a few seconds.
    time.sleep(5)
    wait_until_no_run_is_active(ui)


def wait_until_no_run_is_active(ui: DagsterUi, timeout: float = RUN_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        active = ui.graphql("""query($statuses: [RunStatus!]) { runsOrError(filter: {statuses: $statuses}) {
            ... on Runs { results { runId jobName status } } } }""",
                            {"statuses": ACTIVE_RUN_STATUSES})["runsOrError"]["results"]
        if not active:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still active after {timeout:.0f} s: {active}")
        time.sleep(POLL_SECONDS)


def _wait_until_serving(ui: DagsterUi, process: subprocess.Popen[bytes],
                        timeout: float = DAGSTER_READY_SECONDS) -> None:
    """The webserver answers and the code location has loaded; fails at once if `dagster dev` exits, and
    either way with the end of its log."""
    started = time.monotonic()
    deadline = started + timeout
    last_seen = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with code {process.returncode} after "
                               f"{time.monotonic() - started:.0f} s; the end of {ui.log_path}:\n{_log_tail(ui)}")
        try:
            data = ui.graphql("""{ workspaceOrError { ... on Workspace { locationEntries {
                                     name loadStatus
                                     locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
            entries = data["workspaceOrError"]["locationEntries"]
            for entry in entries:
                if entry["name"] == LOCATION_NAME and entry["loadStatus"] == "LOADED":
                    loaded = entry["locationOrLoadError"] or {}
                    if loaded.get("__typename") == "PythonError":  # it will not load by waiting longer
                        raise RuntimeError(f"the code location failed to load: {loaded['message']}")
                    return
            last_seen = f"location entries {entries}"
        except httpx.HTTPError as error:
            last_seen = f"{type(error).__name__}: {error}"
        time.sleep(1)
    raise TimeoutError(f"dagster dev not ready after {timeout:.0f} s ({last_seen}); the end of "
                       f"{ui.log_path}:\n{_log_tail(ui)}")


def _log_tail(ui: DagsterUi, lines: int = 40) -> str:
    return "\n".join(ui.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser page; when the test fails, a screenshot of where it was, `failed_<test>.png`."""
    # Wide enough that the asset graph draws full nodes (name, checks, kinds), not zoomed-out boxes.
    context = browser.new_context(viewport={"width": 2400, "height": 1300})
    # The "Join the Dagster community" modal covers the page on a fresh instance; mark it as seen.
    context.add_init_script("window.localStorage.setItem('communityNux', '1')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):  # the screenshot must not hide the test's own failure
            page.screenshot(path=ARTIFACTS_DIR / f"failed_{request.node.name}.png", full_page=True)
    context.close()
    assert not errors, f"JavaScript errors in the UI: {errors}"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR
