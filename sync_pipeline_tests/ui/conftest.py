"""A real `dagster dev` on a free port, pointed at the test session's servers, and a headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from sync_pipeline.hub.hub import Hub
from sync_pipeline.sandbox.bigquery_emulator import BigQueryEmulator
from sync_pipeline.sandbox.postgres import PostgresServer, free_port
from sync_pipeline.sandbox.twenty.server import StandinServer
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline_tests.helpers import insert_person

PROJECT_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts" / "ui"
LOCATION_NAME = "sync_pipeline"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@dataclass
class DagsterUi:
    url: str
    log_path: Path

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
    """`dagster dev` with every store configured; its own databases, dataset and DAGSTER_HOME."""
    names = (f"ui_local_{os.getpid()}", f"ui_supabase_{os.getpid()}")
    local_dsn, supabase_dsn = (postgres_server.create_database(name) for name in names)
    hub = Hub(local_dsn)
    hub.migrate()
    for store_name, dsn in (("local_db", local_dsn), ("supabase", supabase_dsn)):
        PostgresStore(store_name, dsn, id_map=hub.id_map(store_name)).install()
    with psycopg.connect(supabase_dsn) as conn:
        insert_person(conn, first_name="Grace", last_name="Hopper")  # so the run moves a record

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
        "BIGQUERY_DATASET": f"ui_{os.getpid()}",
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
    ui = DagsterUi(f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_until_serving(ui, process)
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


def _wait_until_serving(ui: DagsterUi, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """The webserver answers and the code location has loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, ui.log_path.read_text()[-3000:]
        try:
            data = ui.graphql("""{ workspaceOrError { ... on Workspace { locationEntries {
                                     name loadStatus } } } }""")
            entries = data["workspaceOrError"]["locationEntries"]
            if any(e["name"] == LOCATION_NAME and e["loadStatus"] == "LOADED" for e in entries):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"dagster dev not ready after {timeout:.0f} s:\n{ui.log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # Wide enough that the asset graph draws full nodes (name, checks, kinds), not zoomed-out boxes.
    context = browser.new_context(viewport={"width": 2400, "height": 1300})
    # The "Join the Dagster community" modal covers the page on a fresh instance; mark it as seen.
    context.add_init_script("window.localStorage.setItem('communityNux', '1')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the UI: {errors}"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR
