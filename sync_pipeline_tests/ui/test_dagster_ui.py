"""What an operator sees in the Dagster UI: every store's assets, a gated sync launched with a click, check
results, the safety verdict after a sync, and a broken store as a failed run and an UNSAFE verdict.

The server (`conftest.dagster_ui`) has every store configured and installed, and its schedules and
run-launching sensors stopped: each test launches the runs it needs, as the automation would, and waits
for them. Screenshots go to `test-artifacts/ui/` (and `failed_<test>.png` when a test fails).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from playwright.sync_api import Locator, Page, expect

from sync_pipeline.definitions import defs
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline_tests.ui.conftest import (
    LOCATION_NAME,
    POLL_SECONDS,
    RUN_TIMEOUT_SECONDS,
    DagsterUi,
    wait_until_no_run_is_active,
)

STORE_GROUPS = ("twenty", "supabase", "local_db", "hub", "bigquery")
GATED_JOB = "sync_with_safety_check"  # what operators launch, and what the schedule and the sensors launch
VERDICT = dg.AssetKey(["safety", "verdict"])
PREFLIGHT = dg.AssetKey(["safety", "preflight"])
BROKEN_CHECK = "supabase_people_capture_installed"  # the gate's check that sees the dropped trigger
PAGE_TIMEOUT_MS = 30_000


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


# --- the tests --------------------------------------------------------------------------------------------

def test_asset_graph_shows_every_store(dagster_ui: DagsterUi, page: Page, artifacts_dir: Path) -> None:
    groups = _assets_by_group()
    assert set(STORE_GROUPS) <= set(groups)
    for group in STORE_GROUPS:
        page.goto(f"{dagster_ui.url}/locations/{LOCATION_NAME}/asset-groups/{group}", wait_until="networkidle")
        page.screenshot(path=artifacts_dir / f"asset_group_{group}.png")
        for key in groups[group]:
            # A node shows the last part of its key (the group is the first).
            expect(page.get_by_text(key.path[-1], exact=True).first).to_be_visible(timeout=20_000)


def _launch_from_the_ui(page: Page, dagster_ui: DagsterUi, artifacts_dir: Path) -> str:
    """The gated job's "Materialize all", as an operator launches a sync (the gate first, then the sync);
    waits for the run to succeed and shows it."""
    page.goto(f"{dagster_ui.url}/locations/{LOCATION_NAME}/jobs/{GATED_JOB}")
    button = page.get_by_role("button", name="Materialize all")
    expect(button).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=artifacts_dir / f"{GATED_JOB}.png")
    before = _run_ids(dagster_ui, GATED_JOB)
    button.click()  # no confirmation: the gate the sync depends on is part of the job
    expect(page.get_by_text("Launched run")).to_be_visible(timeout=PAGE_TIMEOUT_MS)

    run_id = _new_run_id(dagster_ui, GATED_JOB, before)
    _wait_for_run(dagster_ui, run_id, "SUCCESS")
    page.goto(f"{dagster_ui.url}/runs/{run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(page.get_by_text("Loading run logs")).to_be_hidden(timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=artifacts_dir / f"{GATED_JOB}_run.png")
    return run_id


def test_checks_tab_shows_check_results(dagster_ui: DagsterUi, page: Page, artifacts_dir: Path) -> None:
    """The checks of the hub's people (or of the first asset with checks), executed, then shown: every one
    passed, none reads "Failed" (nor "Not evaluated")."""
    checks = _checks_by_asset()
    asset = dg.AssetKey(["hub", "people"]) if dg.AssetKey(["hub", "people"]) in checks else next(iter(checks))
    _wait_for_run(dagster_ui, _launch_checks(dagster_ui, asset, checks[asset]), "SUCCESS")
    # The run's end and its check evaluations reach the event log separately: wait for them to settle.
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        results = _latest_check_results(dagster_ui, asset)
        settled = all(result in ("SUCCEEDED", "FAILED") for result in results.values())
        if settled or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(results) == set(checks[asset])
    assert settled, results

    statuses = _check_statuses(page, dagster_ui, asset, checks[asset])
    page.screenshot(path=artifacts_dir / f"checks_{'_'.join(asset.path)}.png")
    assert "Failed" not in statuses.values(), statuses
    assert set(statuses.values()) == {"Succeeded"}, statuses
    assert results == {name: "SUCCEEDED" for name in checks[asset]}, results
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()  # the selected check's result


def test_a_sync_launched_from_the_ui_is_safe_and_evaluates_every_check(
        dagster_ui: DagsterUi, page: Page, artifacts_dir: Path) -> None:
    run_id = _launch_from_the_ui(page, dagster_ui, artifacts_dir)
    assert _verdict_metadata(dagster_ui)["run_id"] == run_id  # the page below shows this sync's verdict

    # SAFE, not SAFE_WITH_WARNINGS: the fixture configures and installs all four stores (no store is "not
    # configured", which would be a WARN), resets the Twenty stand-in to its seed data, and the one person
    # it adds in Supabase is valid; no other run overlaps this one (see conftest._stop_launching_automation).
    _open_verdict(page, dagster_ui)
    expect(_metadata_value(page, "verdict")).to_have_text("SAFE")
    expect(_metadata_value(page, "failing")).to_have_text("[]")
    expect(_metadata_value(page, "warning")).to_have_text("[]")
    page.screenshot(path=artifacts_dir / "verdict_safe.png", full_page=True)

    # Every asset's Checks tab: the monitoring checks ran with the sync they describe, so none reads
    # "Not evaluated" (nor "Failed": all passed). 20-odd pages, one per asset with checks.
    checks = _checks_by_asset()
    statuses: dict[str, str] = {}
    for asset, names in sorted(checks.items(), key=lambda item: item[0].to_user_string()):
        shown = _check_statuses(page, dagster_ui, asset, names)
        statuses.update({f"{asset.to_user_string()} {name}": status for name, status in shown.items()})
        if asset in (PREFLIGHT, dg.AssetKey(["supabase", "people"])):
            page.screenshot(path=artifacts_dir / f"checks_after_sync_{'_'.join(asset.path)}.png")
    assert len(statuses) == sum(len(names) for names in checks.values()) > 50, len(statuses)
    not_evaluated = sorted(name for name, status in statuses.items() if status == "Not evaluated")
    assert not not_evaluated, not_evaluated
    assert {name: status for name, status in statuses.items() if status != "Succeeded"} == {}


def test_a_broken_store_fails_the_run_and_the_verdict_says_unsafe(
        dagster_ui: DagsterUi, page: Page, artifacts_dir: Path) -> None:
    """Supabase's people trigger dropped: the next gated sync is a failed run (on the Runs page's Failed tab)
    whose gate check names the broken capture; the verdict says UNSAFE with the check's name, and still does
    after one more sync; `install` mends it and the next sync's verdict no longer names it."""
    wait_until_no_run_is_active(dagster_ui)
    with psycopg.connect(dagster_ui.supabase_dsn) as conn:
        conn.execute("drop trigger people_sync_cdc on public.people")
    try:
        gated = _launch(dagster_ui, GATED_JOB)
        run = _wait_for_run(dagster_ui, gated, "FAILURE")
        assert BROKEN_CHECK in _failed_checks(dagster_ui, gated), _failure_summary(dagster_ui, gated)
        assert _check_statuses(page, dagster_ui, PREFLIGHT, [BROKEN_CHECK]) == {BROKEN_CHECK: "Failed"}
        page.screenshot(path=artifacts_dir / "broken_gate_check.png")
        _open_failed_runs(page, dagster_ui, [gated])
        page.screenshot(path=artifacts_dir / "runs_failed_tab.png")

        failed_runs = [gated]
        if _verdict_metadata(dagster_ui)["run_id"] != gated:
            # A failed blocking gate check stops everything downstream in the gated job, the verdict included.
            # Outside a sync the product refreshes the verdict so: the hourly schedule runs the checks alone
            # (`safety_checks_job`), then the sensor `verdict_after_safety_checks` runs `safety_verdict_job`.
            # Both are launched here rather than left to their timing. The sensor reacts to a successful
            # checks run only, and this one may fail (a blocking check failed): the verdict job is launched
            # whatever its end.
            assert "safety__verdict" not in _succeeded_steps(run), run["stepStats"]
            _wait_for_run(dagster_ui, _launch(dagster_ui, "safety_checks_job"), None)
            verdict_run = _launch(dagster_ui, "safety_verdict_job")
            _wait_for_run(dagster_ui, verdict_run, "FAILURE")  # its blocking check `safe` fails: UNSAFE
            failed_runs.append(verdict_run)
        verdict = _verdict_metadata(dagster_ui)
        assert verdict["run_id"] == failed_runs[-1] and verdict["verdict"] == "UNSAFE", verdict
        assert any(BROKEN_CHECK in line for line in verdict["failing"]), verdict["failing"]
        _expect_unsafe_naming_the_check(page, dagster_ui)
        page.screenshot(path=artifacts_dir / "verdict_unsafe.png", full_page=True)

        # One more sync, as the schedule launches it: a failed run again, and the UI still says UNSAFE with
        # the check's name, in the verdict and on the gate's Checks tab.
        again = _launch(dagster_ui, GATED_JOB)
        _wait_for_run(dagster_ui, again, "FAILURE")
        failed_runs.append(again)
        _expect_unsafe_naming_the_check(page, dagster_ui)
        page.screenshot(path=artifacts_dir / "verdict_unsafe_after_one_more_sync.png", full_page=True)
        assert _check_statuses(page, dagster_ui, PREFLIGHT, [BROKEN_CHECK]) == {BROKEN_CHECK: "Failed"}
        _open_failed_runs(page, dagster_ui, failed_runs)
        page.screenshot(path=artifacts_dir / "runs_failed_tab_after_one_more_sync.png")
    finally:
        PostgresStore("supabase", dagster_ui.supabase_dsn).install()  # what `sync-pipeline install` runs

    # Mended: the next sync succeeds, its check passes and the verdict no longer names it.
    healed = _launch(dagster_ui, GATED_JOB)
    _wait_for_run(dagster_ui, healed, "SUCCESS")
    verdict = _verdict_metadata(dagster_ui)
    assert verdict["run_id"] == healed and verdict["verdict"] != "UNSAFE" and not verdict["failing"], verdict
    assert _check_statuses(page, dagster_ui, PREFLIGHT, [BROKEN_CHECK]) == {BROKEN_CHECK: "Succeeded"}
    _open_verdict(page, dagster_ui)
    expect(_metadata_value(page, "failing")).to_have_text("[]")
    page.screenshot(path=artifacts_dir / "verdict_after_install.png", full_page=True)


# --- launching and waiting --------------------------------------------------------------------------------

_LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def _launch(dagster_ui: DagsterUi, job: str) -> str:
    """The whole job, as its "Materialize all" (or a schedule) launches it."""
    data = dagster_ui.graphql(_LAUNCH, {"params": {"selector": {
        "repositoryLocationName": LOCATION_NAME, "repositoryName": "__repository__", "jobName": job}}})
    assert data["launchRun"]["__typename"] == "LaunchRunSuccess", data
    return data["launchRun"]["run"]["runId"]


def _launch_checks(dagster_ui: DagsterUi, asset: dg.AssetKey, names: list[str]) -> str:
    """The asset's checks alone, as the UI's "Execute" on the checks tab launches them."""
    data = dagster_ui.graphql(_LAUNCH, {"params": {"selector": {
        "repositoryLocationName": LOCATION_NAME, "repositoryName": "__repository__", "jobName": "__ASSET_JOB",
        "assetSelection": [],
        "assetCheckSelection": [{"assetKey": {"path": asset.path}, "name": name} for name in names]}}})
    assert data["launchRun"]["__typename"] == "LaunchRunSuccess", data
    return data["launchRun"]["run"]["runId"]


def _run_ids(dagster_ui: DagsterUi, job: str) -> set[str]:
    runs = dagster_ui.graphql("""query($job: String) { runsOrError(filter: {pipelineName: $job}) {
        ... on Runs { results { runId } } } }""", {"job": job})["runsOrError"]["results"]
    return {run["runId"] for run in runs}


def _new_run_id(dagster_ui: DagsterUi, job: str, before: set[str]) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        new = _run_ids(dagster_ui, job) - before
        if new:
            assert len(new) == 1, f"more than one new run of {job}: {new}"
            return new.pop()
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"no new run of {job} within {RUN_TIMEOUT_SECONDS} s of the click")


_RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run {
    runId jobName status stepStats { stepKey status } } } }"""


def _wait_for_run(dagster_ui: DagsterUi, run_id: str, expected: str | None) -> dict[str, Any]:
    """Polls until the run ends (a queued run waits for the one before it); an end other than `expected`
    (None: any end) fails at once with the run's failed steps and their errors."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        run = dagster_ui.graphql(_RUN, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} of {run['jobName']} still {run['status']} after "
                                 f"{RUN_TIMEOUT_SECONDS} s; the end of {dagster_ui.log_path}:\n"
                                 f"{dagster_ui.log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(POLL_SECONDS)
    if expected is not None and run["status"] != expected:
        raise AssertionError(f"run {run_id} of {run['jobName']} ended {run['status']}, expected {expected}; "
                             f"failed steps {_failed_steps(run)}; {_failure_summary(dagster_ui, run_id)}")
    return run


def _failed_steps(run: dict[str, Any]) -> list[str]:
    return sorted(step["stepKey"] for step in run["stepStats"] if step["status"] == "FAILURE")


def _succeeded_steps(run: dict[str, Any]) -> set[str]:
    return {step["stepKey"] for step in run["stepStats"] if step["status"] == "SUCCESS"}


def _failed_checks(dagster_ui: DagsterUi, run_id: str) -> list[str]:
    """The names of the checks that failed (at any severity) in the run."""
    events = dagster_ui.graphql("""query($id: ID!) { logsForRun(runId: $id, limit: 10000) {
        ... on EventConnection { events {
            ... on AssetCheckEvaluationEvent { evaluation { checkName success } } } } } }""",
                                {"id": run_id})["logsForRun"].get("events", [])
    return sorted(e["evaluation"]["checkName"] for e in events
                  if e.get("evaluation") and not e["evaluation"]["success"])


def _failure_summary(dagster_ui: DagsterUi, run_id: str) -> str:
    """The failed checks with their descriptions and the step failures' errors, for an assertion message."""
    events = dagster_ui.graphql("""query($id: ID!) { logsForRun(runId: $id, limit: 10000) {
        ... on EventConnection { events { __typename
            ... on ExecutionStepFailureEvent { stepKey error { message } }
            ... on RunFailureEvent { message }
            ... on EngineEvent { message error { message } }
            ... on AssetCheckEvaluationEvent { evaluation { checkName success description
                                                           assetKey { path } } } } } } }""",
                                {"id": run_id})["logsForRun"].get("events", [])
    lines = []
    for event in events:
        evaluation = event.get("evaluation")
        if evaluation and not evaluation["success"]:
            lines.append(f"check {'/'.join(evaluation['assetKey']['path'])} {evaluation['checkName']}: "
                         f"{evaluation['description']}")
        elif event.get("error"):
            lines.append(f"{event.get('stepKey') or event.get('message')}: {event['error']['message'][:500]}")
        elif event["__typename"] == "RunFailureEvent":
            lines.append(event["message"][:500])
    return "\n".join(lines) or "no failure in the event log"


# --- reading the UI ---------------------------------------------------------------------------------------

def _latest_check_results(dagster_ui: DagsterUi, asset: dg.AssetKey) -> dict[str, str]:
    data = dagster_ui.graphql("""query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
        ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks {
            name executionForLatestMaterialization { status } } } } } } }""", {"key": {"path": asset.path}})
    checks = data["assetNodeOrError"]["assetChecksOrError"]["checks"]
    return {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks}


def _check_statuses(page: Page, dagster_ui: DagsterUi, asset: dg.AssetKey,
                    names: list[str]) -> dict[str, str]:
    """The status each check reads in the list of the asset's Checks tab ("Succeeded", "Failed", "Not
    evaluated", "In progress"...), once every one of `names` shows one."""
    page.goto(f"{dagster_ui.url}/assets/{asset.to_user_string()}?view=checks")
    expect(page.get_by_text(f"Checks ({len(_checks_by_asset()[asset])})", exact=True)).to_be_visible(
        timeout=PAGE_TIMEOUT_MS)
    statuses = {}
    for name in names:
        # A row of the list: the name (middle-truncated, full in its title) and under it the status.
        status = page.locator(f'span:has(> div[title="{name}"]) > span').first
        expect(status).to_have_text(_ANY_STATUS, timeout=PAGE_TIMEOUT_MS)
        statuses[name] = (status.text_content() or "").strip()
    return statuses


_ANY_STATUS = re.compile(r"^(Succeeded|Failed|Not evaluated|In progress|Skipped|Execution failed)$",
                         re.IGNORECASE)


def _open_verdict(page: Page, dagster_ui: DagsterUi) -> None:
    page.goto(f"{dagster_ui.url}/assets/{VERDICT.to_user_string()}")
    expect(_metadata_value(page, "verdict")).to_be_visible(timeout=PAGE_TIMEOUT_MS)


def _metadata_value(page: Page, key: str) -> Locator:
    """The value cell of a row of the latest materialization's metadata table (Key, Timestamp, Value)."""
    return page.locator(f"xpath=//tr[td[1][normalize-space()='{key}']]/td[last()]")


def _expect_unsafe_naming_the_check(page: Page, dagster_ui: DagsterUi) -> None:
    _open_verdict(page, dagster_ui)
    expect(_metadata_value(page, "verdict")).to_have_text("UNSAFE")
    expect(_metadata_value(page, "failing")).to_contain_text(f"safety/preflight {BROKEN_CHECK}")
    expect(_metadata_value(page, "checks")).to_contain_text(BROKEN_CHECK)


def _open_failed_runs(page: Page, dagster_ui: DagsterUi, run_ids: list[str]) -> None:
    """The Runs page, then its Failed tab, as an operator filters it: it lists each of `run_ids` and no
    successful run."""
    page.goto(f"{dagster_ui.url}/runs")
    page.get_by_role("tab", name="Failed").click()
    expect(page).to_have_url(re.compile(r"status%3AFAILURE"), timeout=PAGE_TIMEOUT_MS)
    for run_id in run_ids:
        # A row's link shows the short id, "run 1a2b3c4d"; it points at the run's page.
        expect(page.locator(f'a[href="/runs/{run_id}"]').first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(page.get_by_text("Success", exact=True)).to_have_count(0)


def _verdict_metadata(dagster_ui: DagsterUi, run_id: str | None = None) -> dict[str, Any]:
    """The verdict's latest materialization (or the one of `run_id`): its run and metadata."""
    node = dagster_ui.graphql("""query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
        ... on AssetNode { assetMaterializations(limit: 20) { runId metadataEntries { label
            ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString }
            ... on MarkdownMetadataEntry { mdStr } } } } } }""", {"key": {"path": VERDICT.path}})
    materializations = node["assetNodeOrError"]["assetMaterializations"]
    assert materializations, "the verdict was never materialized"
    chosen = (next((m for m in materializations if m["runId"] == run_id), None) if run_id
              else materializations[0])
    assert chosen is not None, f"no verdict materialized by run {run_id}"
    metadata: dict[str, Any] = {"run_id": chosen["runId"]}
    for entry in chosen["metadataEntries"]:
        if "jsonString" in entry:
            metadata[entry["label"]] = json.loads(entry["jsonString"])
        else:
            metadata[entry["label"]] = entry.get("text", entry.get("mdStr"))
    return metadata
