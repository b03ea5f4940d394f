"""What a newcomer sees in the Dagster UI: every store's assets, a run launched with a click, check results.

Screenshots go to `test-artifacts/ui/`.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from pathlib import Path

import dagster as dg
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from sync_pipeline.definitions import defs
from sync_pipeline_tests.ui.conftest import LOCATION_NAME, DagsterUi

STORE_GROUPS = ("twenty", "supabase", "local_db", "hub", "bigquery")
RUN_TIMEOUT_SECONDS = 120


def _assets_by_group() -> dict[str, list[dg.AssetKey]]:
    groups: dict[str, list[dg.AssetKey]] = defaultdict(list)
    for spec in defs.resolve_all_asset_specs():
        groups[spec.group_name].append(spec.key)
    return groups


def _checks_by_asset() -> dict[dg.AssetKey, list[str]]:
    checks: dict[dg.AssetKey, list[str]] = defaultdict(list)
    for key in defs.resolve_asset_graph().asset_check_keys:
        checks[key.asset_key].append(key.name)
    return checks


def test_asset_graph_shows_every_store(dagster_ui: DagsterUi, page: Page, artifacts_dir: Path) -> None:
    groups = _assets_by_group()
    assert set(STORE_GROUPS) <= set(groups)
    for group in STORE_GROUPS:
        page.goto(f"{dagster_ui.url}/locations/{LOCATION_NAME}/asset-groups/{group}", wait_until="networkidle")
        page.screenshot(path=artifacts_dir / f"asset_group_{group}.png")
        for key in groups[group]:
            # A node shows the last part of its key (the group is the first).
            expect(page.get_by_text(key.path[-1], exact=True).first).to_be_visible(timeout=20_000)


def test_run_launched_from_the_ui_succeeds(dagster_ui: DagsterUi, page: Page, artifacts_dir: Path) -> None:
    page.goto(f"{dagster_ui.url}/locations/{LOCATION_NAME}/jobs/sync_job")
    button = page.get_by_role("button", name="Materialize all")
    expect(button).to_be_enabled(timeout=20_000)
    page.screenshot(path=artifacts_dir / "sync_job.png")
    button.click()
    # Dagster asks to confirm when an upstream asset outside the job (the safety gate) was never materialized.
    confirm = page.get_by_role("button", name="Confirm")
    with contextlib.suppress(PlaywrightTimeoutError):
        confirm.click(timeout=5_000)

    run = _wait_for_sync_run(dagster_ui)
    page.goto(f"{dagster_ui.url}/runs/{run['runId']}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=20_000)
    expect(page.get_by_text("Loading run logs")).to_be_hidden(timeout=20_000)
    page.screenshot(path=artifacts_dir / "sync_job_run.png")
    assert run["status"] == "SUCCESS", dagster_ui.log_path.read_text()[-3000:]


def _wait_for_sync_run(dagster_ui: DagsterUi) -> dict[str, str]:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        runs = dagster_ui.graphql("""{ runsOrError(filter: {pipelineName: "sync_job"}, limit: 1) {
                                         ... on Runs { results { runId status } } } }""")["runsOrError"]["results"]
        if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no finished sync_job run within {RUN_TIMEOUT_SECONDS} s (launched: {runs})")


def test_checks_tab_shows_check_results(dagster_ui: DagsterUi, page: Page, artifacts_dir: Path) -> None:
    """The checks of the hub's people (or of the first asset with checks), executed, then shown."""
    checks = _checks_by_asset()
    asset = dg.AssetKey(["hub", "people"]) if dg.AssetKey(["hub", "people"]) in checks else next(iter(checks))
    status = _wait_for_run(dagster_ui, _launch_checks(dagster_ui, asset, checks[asset]))
    assert status in ("SUCCESS", "FAILURE"), status  # a failed ERROR check fails its run: still a result
    # The run's end and its check evaluations reach the event log separately (and the sensors, on in this
    # server, may be running a sync meanwhile): wait for the evaluations to settle.
    deadline = time.monotonic() + 60
    while True:
        results = _latest_check_results(dagster_ui, asset)
        settled = all(result in ("SUCCEEDED", "FAILED") for result in results.values())
        if settled or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(results) == set(checks[asset])
    assert settled, results

    page.goto(f"{dagster_ui.url}/assets/{asset.to_user_string()}?view=checks", wait_until="networkidle")
    for name in checks[asset]:
        expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=20_000)
    expect(page.get_by_text("Passed").or_(page.get_by_text("Failed")).first).to_be_visible()
    page.screenshot(path=artifacts_dir / f"checks_{'_'.join(asset.path)}.png")


def _launch_checks(dagster_ui: DagsterUi, asset: dg.AssetKey, names: list[str]) -> str:
    """The asset's checks alone, as the UI's "Execute" on the checks tab launches them."""
    data = dagster_ui.graphql("""mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        {"params": {"selector": {
            "repositoryLocationName": LOCATION_NAME, "repositoryName": "__repository__", "jobName": "__ASSET_JOB",
            "assetSelection": [],
            "assetCheckSelection": [{"assetKey": {"path": asset.path}, "name": name} for name in names]}}})
    assert data["launchRun"]["__typename"] == "LaunchRunSuccess", data
    return data["launchRun"]["run"]["runId"]


def _wait_for_run(dagster_ui: DagsterUi, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = dagster_ui.graphql("""query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }""",
                                 {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run["status"]
        time.sleep(1)
    raise AssertionError(f"run {run_id} not finished within {RUN_TIMEOUT_SECONDS} s")


def _latest_check_results(dagster_ui: DagsterUi, asset: dg.AssetKey) -> dict[str, str]:
    data = dagster_ui.graphql("""query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
        ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks {
            name executionForLatestMaterialization { status } } } } } } }""", {"key": {"path": asset.path}})
    checks = data["assetNodeOrError"]["assetChecksOrError"]["checks"]
    return {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks}
