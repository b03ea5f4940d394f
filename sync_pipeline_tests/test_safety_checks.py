"""The safety checks, each failing when what it protects is broken (the healthy sync and the looks that change
nothing are in test_safety_checks_healthy.py, on one sync for the module). Checks run through Dagster (the
safety job, as the command and the UI run them) or, for the breakage cases, as the functions those asset
checks call."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from sync_pipeline.model.entities import entity
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety.checks import Status
from sync_pipeline.settings import Thresholds
from sync_pipeline.stores.twenty.spec import TWENTY
from sync_pipeline.commands.safety import overall, run_checks
from sync_pipeline_tests.fixtures.defs import run_job, sync_a_healthy_sandbox
from sync_pipeline_tests.helpers import insert_person

PEOPLE, COMPANIES = entity("people"), entity("companies")
LIMITS = Thresholds()


@pytest.fixture
def synced(four_stores, topology, twenty_client):
    """A healthy sandbox: records in three sources, synced everywhere (a test of its own changes it)."""
    sync_a_healthy_sandbox(four_stores, topology, twenty_client)
    return four_stores


def _commands_side_by_side(*runs: tuple[list[str], dict[str, str], Path]
                           ) -> list[subprocess.CompletedProcess[str]]:
    """The commands run at once, each in its own process and DAGSTER_HOME (two read-only looks at the same
    databases, as two operators' terminals): most of a run is importing Dagster and loading the code
    location, which two cores do side by side."""
    processes = [subprocess.Popen(command, env={**env, "DAGSTER_HOME": str(home)}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=home) for command, env, home in runs]
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=600)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.mark.timeout(1800)  # four subprocesses, each loading the code location and running every check
def test_the_safety_command_prints_unsafe_and_exits_1_on_a_dropped_trigger(synced, topology, twenty_standin,
                                                                          bigquery_emulator, tmp_path):
    bigquery = synced.resources["bigquery"]
    env = {**os.environ, "SYNC_HUB_DATABASE_URL": topology.local_dsn, "LOCAL_DATABASE_URL": topology.local_dsn,
           "SUPABASE_DATABASE_URL": topology.supabase_dsn, "SUPABASE_SSLMODE": "disable",
           "TWENTY_API_URL": twenty_standin.base_url, "TWENTY_API_KEY": twenty_standin.api_key,
           "BIGQUERY_PROJECT": bigquery.project, "BIGQUERY_DATASET": bigquery.dataset,
           "BIGQUERY_EMULATOR_URL": bigquery.api_endpoint}
    # Each in an empty directory (its DAGSTER_HOME): a sandbox's .env in the project would fill in what a
    # case removes.
    homes = [tmp_path / "first", tmp_path / "second"]
    for home in homes:
        home.mkdir()
    command = [sys.executable, "-m", "sync_pipeline.cli", "safety"]
    without_twenty = {k: v for k, v in env.items() if not k.startswith("TWENTY_")}
    healthy, warned = _commands_side_by_side((command, env, homes[0]), (command, without_twenty, homes[1]))
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.strip().splitlines()[-1].startswith("SAFE ")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert warned.stdout.strip().splitlines()[-1].startswith("SAFE_WITH_WARNINGS ")
    assert "WARN  safety/preflight twenty_connection" in warned.stdout
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("drop trigger people_sync_cdc on public.people")
    broken, as_json = _commands_side_by_side((command, env, homes[0]), ([*command, "--json"], env, homes[1]))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout.strip().splitlines()[-1].startswith("UNSAFE ")
    assert "FAIL  safety/preflight supabase_people_capture_installed" in broken.stdout
    assert "capture_trigger" in broken.stdout
    assert as_json.returncode == 1 and '"overall": "UNSAFE"' in as_json.stdout


def test_the_gated_sync_writes_nothing_when_the_hubs_integrity_fails(synced, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Not yet", email="wait@example.com")
    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn, first_name="Also waits", email="also@example.com")
    with topology.hub.connect() as conn:  # a new golden version that breaks its contract: nothing may spread
        conn.execute("""update sync.golden set data = jsonb_set(data, '{email}', '"not-an-email"'),
                               version = version + 1
                        where entity = 'people' and data->>'email' = 'grace@navy.mil'""")
        before = conn.execute("select (select count(*) from sync.inbox) as inbox, "
                              "(select count(*) from sync.record_outcomes) as outcomes").fetchone()
    result = run_job(synced.defs, "sync_with_safety_check")
    assert not result.success
    assert [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()] == [
        "safety/preflight"]
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.check_name, e.severity) for e in failed] == [("people_contract", dg.AssetCheckSeverity.ERROR)]
    with topology.hub.connect() as conn:
        after = conn.execute("select (select count(*) from sync.inbox) as inbox, "
                             "(select count(*) from sync.record_outcomes) as outcomes").fetchone()
    assert after == before
    assert pid not in {str(p["id"]) for p in topology.local_db.rows(PEOPLE)}
    assert "also@example.com" not in {p["email"] for p in topology.supabase.rows(PEOPLE)}  # nor published


def test_a_store_without_change_capture_holds_back_itself_only(synced, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Not yet", email="wait@example.com")
        conn.execute("drop trigger people_sync_cdc on public.people")
    with psycopg.connect(topology.local_dsn) as conn:
        also = insert_person(conn, first_name="Goes on", email="also@example.com")
    result = run_job(synced.defs, "sync_with_safety_check")
    assert not result.success  # its capture failed and the verdict is UNSAFE: a failed run, after the rest
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert {"supabase_people_capture_installed", "safe"} <= failed
    assert also in {str(p["id"]) for p in topology.supabase.rows(PEOPLE)}  # the local DB's change went out


def test_the_gated_sync_runs_when_the_checks_pass(synced, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Gated", email="gated@example.com")
    result = run_job(synced.defs, "sync_with_safety_check")
    assert result.success
    assert pid in {str(p["id"]) for p in topology.local_db.rows(PEOPLE)}


# -- each check fails when what it protects is broken --------------------------------------------------


def test_connection_fails_for_an_unreachable_database():
    from sync_pipeline.stores.postgres import PostgresStore

    store = PostgresStore("supabase", "postgresql://sync:s3cret@127.0.0.1:1/nowhere", connect_timeout=2)
    verdict = safety.connection(store)
    assert verdict.status is Status.FAIL and "cannot connect" in verdict.reason
    assert "s3cret" not in verdict.reason


def test_capture_installed_fails_without_the_row_versions(synced, topology):
    assert safety.capture_installed(topology.supabase, PEOPLE, topology.hub).status is Status.PASS
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute('drop table sync_cdc."public.people.versions"')
    verdict = safety.capture_installed(topology.supabase, PEOPLE, topology.hub)
    assert verdict.status is Status.FAIL and "row_versions_present" in verdict.reason


def test_capture_lag_warns_on_a_stale_webhook_backlog(synced, topology, twenty_store):
    assert safety.capture_lag(twenty_store, PEOPLE, topology.hub, LIMITS).status is Status.PASS
    with topology.hub.connect() as conn:
        conn.execute("""insert into sync.inbox (store, entity, event_key, kind, store_record_id, payload, received_at)
                        select 'twenty', 'people', 'stale-' || i, 'webhook', gen_random_uuid()::text, '{}',
                               now() - interval '1 hour'
                        from generate_series(1, 5) i""")
    verdict = safety.capture_lag(twenty_store, PEOPLE, topology.hub, LIMITS)
    assert verdict.status is Status.WARN and "5 webhook hints waiting" in verdict.reason


def test_capture_lag_warns_when_changes_pile_up(synced, topology):
    with psycopg.connect(topology.local_dsn) as conn:
        for _ in range(3):
            insert_person(conn)
    verdict = safety.capture_lag(topology.local_db, PEOPLE, topology.hub, Thresholds(lag_rows=2))
    assert verdict.status is Status.WARN and "3 changes waiting" in verdict.reason


def test_golden_contract_fails_on_a_corrupt_golden_record(synced, topology):
    assert safety.golden_contract(topology.hub, PEOPLE).status is Status.PASS
    with topology.hub.connect() as conn:
        conn.execute("""update sync.golden set data = data || '{"email": "not-an-email"}'
                        where entity = 'people' and data->>'first_name' = 'Grace'""")
    verdict = safety.golden_contract(topology.hub, PEOPLE)
    assert verdict.status is Status.FAIL and "email" in verdict.reason
    assert verdict.metadata["failure_cases"][0]["failure_case"] == "not-an-email"


def test_store_contract_warns_on_an_invalid_row(synced, topology):
    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn, first_name=None)
    verdict = safety.store_contract(topology.local_db, PEOPLE, topology.hub)
    assert verdict.status is Status.WARN and "first_name" in verdict.reason


def test_quarantine_warns_while_a_record_waits(synced, topology):
    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn, email="broken")
    assert run_job(synced.defs).success
    verdict = safety.quarantine(topology.hub, PEOPLE)
    assert verdict.status is Status.WARN and "1 people records quarantined" in verdict.reason


def test_applied_once_fails_when_a_change_made_two_versions(synced, topology):
    assert safety.applied_once(topology.hub, PEOPLE).status is Status.PASS
    with topology.hub.connect() as conn:
        # the same source change applied again (e.g. re-captured under a new key after a cursor reset)
        conn.execute("""insert into sync.golden_history (entity, record_id, version, data, deleted, content_hash,
                                                         origin_store, origin_modified_at)
                        select entity, record_id, version + 1, data, deleted, content_hash, origin_store,
                               origin_modified_at
                        from sync.golden_history where entity = 'people' limit 1""")
    verdict = safety.applied_once(topology.hub, PEOPLE)
    assert verdict.status is Status.FAIL and len(verdict.metadata["changes"][0]["versions"]) == 2


def test_applied_once_fails_when_an_event_has_two_outcomes(synced, topology):
    with topology.hub.connect() as conn:
        conn.execute("""insert into sync.record_outcomes (run_id, store, entity, record_id, event_key, stage, outcome)
                        select run_id, store, entity, record_id, event_key, stage, outcome from sync.record_outcomes
                        where entity = 'people' and stage = 'resolve' and outcome = 'applied' limit 1""")
    verdict = safety.applied_once(topology.hub, PEOPLE)
    assert verdict.status is Status.FAIL and verdict.metadata["events"][0]["outcomes"] == 2


def test_conflicts_recorded_holds_when_a_delete_wins(synced, topology):
    [grace] = [p for p in topology.supabase.rows(PEOPLE) if p["first_name"] == "Grace"]
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("update people set city = 'Rome' where id = %s", (grace["id"],))
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("delete from people where id = %s", (grace["id"],))  # later: the delete wins
    assert run_job(synced.defs).success
    with topology.hub.connect() as conn:
        assert conn.execute("select count(*) as n from sync.conflicts").fetchone()["n"] == 1
    assert safety.conflicts_recorded(topology.hub, PEOPLE).status is Status.PASS


def test_unique_keys_fail_on_a_duplicate_email_in_a_store(synced, topology):
    stores = [topology.supabase, topology.local_db]
    assert safety.unique_natural_keys(topology.hub, stores, PEOPLE).status is Status.PASS
    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn, email="grace@navy.mil")
    verdict = safety.unique_natural_keys(topology.hub, stores, PEOPLE)
    assert verdict.status is Status.FAIL and verdict.metadata["duplicates"] == {"local_db": ["grace@navy.mil"]}


def _edit_grace_on_both_sides(synced, topology) -> None:
    """A conflict: the same person's city edited in Supabase, then in the local DB, then a sync."""
    [grace] = [p for p in topology.supabase.rows(PEOPLE) if p["first_name"] == "Grace"]
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("update people set city = 'Paris' where id = %s", (grace["id"],))
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("update people set city = 'Rome' where id = %s", (grace["id"],))
    assert run_job(synced.defs).success


def test_conflicts_recorded_fails_when_the_winner_is_not_what_the_hub_holds(synced, topology):
    _edit_grace_on_both_sides(synced, topology)
    assert safety.conflicts_recorded(topology.hub, PEOPLE).status is Status.PASS
    with topology.hub.connect() as conn:
        # whichever side won, the recorded winner now says something the hub never held
        conn.execute("""update sync.conflicts set incoming_side = jsonb_set(incoming_side, '{data,city}', '"Oslo"'),
                                                 golden_side = jsonb_set(golden_side, '{data,city}', '"Oslo"')""")
    assert safety.conflicts_recorded(topology.hub, PEOPLE).status is Status.FAIL


def test_conflict_rate_warns_above_its_threshold(synced, topology):
    _edit_grace_on_both_sides(synced, topology)
    verdict = safety.conflict_rate(topology.hub, PEOPLE, Thresholds(conflict_rate=0.1))
    assert verdict.status is Status.WARN and verdict.metadata["conflicts"] == 1


def test_errors_fail_when_an_error_stays_unresolved(synced, topology):
    assert safety.errors(topology.hub, "twenty", PEOPLE, LIMITS).status is Status.PASS
    error_id = topology.hub.record_error(store="twenty", entity="people", record_id=str(uuid.uuid4()),
                                         operation="publish", error=RuntimeError("boom"))
    with topology.hub.connect() as conn:
        conn.execute("update sync.errors set occurred_at = now() - interval '2 hours' where id = %s", (error_id,))
    verdict = safety.errors(topology.hub, "twenty", PEOPLE, LIMITS)
    assert verdict.status is Status.FAIL and "1 errors" in verdict.reason


def test_rate_limits_warn_on_429s_and_fail_on_a_run_that_failed_on_them(synced, topology, twenty_standin):
    assert safety.rate_limits(topology.hub, TWENTY, LIMITS).status is Status.PASS
    twenty_standin.set_faults(throttle_next=2)
    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn, first_name="Throttled")
    assert run_job(synced.defs).success
    verdict = safety.rate_limits(topology.hub, TWENTY, LIMITS)
    assert verdict.status is Status.WARN and verdict.metadata["rate_limited_responses"] == 2
    from sync_pipeline.stores.twenty.errors import TwentyRateLimited

    with topology.hub.connect() as conn:
        run_id = conn.execute("select run_id from sync.runs order by started_at desc limit 1").fetchone()["run_id"]
    topology.hub.record_error(store="twenty", entity="people", operation="publish", run_id=run_id,
                              error=TwentyRateLimited("rate limit exceeded", status=429))
    assert safety.rate_limits(topology.hub, TWENTY, LIMITS).status is Status.FAIL


def test_consistency_fails_on_a_row_changed_behind_the_syncs_back(synced, topology, bigquery_store):
    for store in (topology.supabase, topology.local_db):
        assert safety.consistency(store, PEOPLE, topology.hub).status is Status.PASS
    with psycopg.connect(topology.local_dsn) as conn:
        # changed with our writer tag, so capture does not see it: drift only a comparison finds
        conn.execute("select set_config('sync_pipeline.writer', 'sync', true)")
        conn.execute("update people set last_name = 'Drifted'")
    verdict = safety.consistency(topology.local_db, PEOPLE, topology.hub)
    assert verdict.status is Status.FAIL and len(verdict.metadata["mismatched"]) == 2


def test_consistency_fails_on_a_bigquery_row_changed_by_hand(synced, topology, bigquery_store):
    assert safety.consistency(bigquery_store, PEOPLE, topology.hub).status is Status.PASS
    bigquery_store.client.query(
        f"UPDATE `{bigquery_store.client.project}.{bigquery_store.dataset_id}.people` SET city = 'Nowhere' "
        f"WHERE TRUE").result()
    verdict = safety.consistency(bigquery_store, PEOPLE, topology.hub)
    assert verdict.status is Status.FAIL and verdict.metadata["mismatched"]


def _open_quarantine(topology, store: str = "supabase") -> list[dict]:
    with topology.hub.connect() as conn:
        return conn.execute("""select record_id, reason from sync.quarantine
                               where store = %s and entity = 'people' and resolved_at is null""",
                            (store,)).fetchall()


def test_consistency_counts_a_quarantined_record_as_quarantined_until_fixed_at_its_source(synced, topology):
    from sync_pipeline.sandbox import demo

    demo._insert_invalid_person(topology.supabase_dsn)  # the demo's invalid person
    pid = demo.INVALID_PERSON_ID
    assert run_job(synced.defs).success
    assert [q["record_id"] for q in _open_quarantine(topology)] == [pid]
    verdict = safety.consistency(topology.supabase, PEOPLE, topology.hub)
    assert verdict.status is Status.WARN, verdict.reason
    assert pid in verdict.reason and "quarantined" in verdict.reason
    assert verdict.metadata["quarantined"] == 1 and verdict.metadata["quarantined_ids"] == [pid]
    assert verdict.metadata["extra"] == [] and verdict.metadata["mismatched"] == []
    assert safety.consistency(topology.local_db, PEOPLE, topology.hub).status is Status.PASS  # never reached it
    with dg.DagsterInstance.ephemeral() as instance:  # as the command and the UI see it: warned, not unsafe
        lines = run_checks(synced.defs, instance)
    assert overall(lines) == "SAFE_WITH_WARNINGS", [line for line in lines if line.status == "FAIL"]
    [line] = [line for line in lines if (line.asset, line.check) == ("supabase/people", "consistent_with_hub")]
    assert line.status == "WARN" and pid in line.reason

    with psycopg.connect(topology.supabase_dsn) as conn:  # the fix the demo prints, made at the source
        conn.execute(demo.FIX_INVALID_PERSON_SQL)
    assert run_job(synced.defs).success
    assert _open_quarantine(topology) == []
    for store in (topology.supabase, topology.local_db):
        verdict = safety.consistency(store, PEOPLE, topology.hub)
        assert verdict.status is Status.PASS, verdict.reason
        assert verdict.metadata["quarantined"] == 0
    assert pid in {str(p["id"]) for p in topology.local_db.rows(PEOPLE)}


def test_consistency_counts_a_synced_record_edited_into_quarantine_as_quarantined(synced, topology):
    [grace] = [p for p in topology.supabase.rows(PEOPLE) if p["first_name"] == "Grace"]
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("update public.people set email = 'grace-at-navy' where id = %s", (grace["id"],))
    assert run_job(synced.defs).success
    verdict = safety.consistency(topology.supabase, PEOPLE, topology.hub)
    assert verdict.status is Status.WARN, verdict.reason
    assert verdict.metadata["quarantined_ids"] == [str(grace["id"])] and verdict.metadata["mismatched"] == []
    with psycopg.connect(topology.supabase_dsn) as conn:  # a real drift beside it still fails
        conn.execute("select set_config('sync_pipeline.writer', 'sync', true)")
        conn.execute("update people set last_name = 'Drifted' where id <> %s", (grace["id"],))
    verdict = safety.consistency(topology.supabase, PEOPLE, topology.hub)
    assert verdict.status is Status.FAIL and "1 quarantined" in verdict.reason


def _hub_run(topology, run_id: str) -> dict:
    with topology.hub.connect() as conn:
        return conn.execute("select status, finished_at from sync.runs where run_id = %s", (run_id,)).fetchone()


def test_a_sync_run_in_process_closes_its_hub_run(synced, topology):
    """The sandbox's first sync runs in process, before any run-status sensor exists: it closes its own run."""
    from sync_pipeline.sandbox.launcher import execute_and_close

    job = synced.defs.resolve_job_def("sync_with_safety_check")
    with dg.DagsterInstance.ephemeral() as instance:
        passed = execute_and_close(job, topology.hub, instance=instance, tags={"sync/trigger": "sandbox start"})
        assert passed.success
        run = _hub_run(topology, passed.run_id)
        assert run["status"] == "success" and run["finished_at"] is not None
        with psycopg.connect(topology.supabase_dsn) as conn:
            conn.execute("drop trigger people_sync_cdc on public.people")
        failed = execute_and_close(job, topology.hub, instance=instance)
    assert not failed.success
    run = _hub_run(topology, failed.run_id)
    assert run["status"] == "failure" and run["finished_at"] is not None


def test_one_duplicate_and_one_store_down_hold_back_only_themselves(synced, topology):
    """A duplicate e-mail in the local DB and BigQuery down: the gated job syncs every other record to every
    reachable store, and the verdict names the held record and the blocked store."""
    from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource

    with psycopg.connect(topology.local_dsn) as conn:
        duplicate = insert_person(conn, first_name="Twin", email="grace@navy.mil")  # Grace's e-mail, again
        fine = insert_person(conn, first_name="Fine", email="fine@example.com")
    down = BigQueryStoreResource(project="nowhere", api_endpoint="http://127.0.0.1:9", dataset="crm_sync")
    defs = synced.without("bigquery", down)
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("sync_with_safety_check").execute_in_process(instance=instance,
                                                                                  raise_on_error=False)
        assert not result.success  # UNSAFE, and a store step failed: a failed run, after everything else
        assert fine in {str(p["id"]) for p in topology.supabase.rows(PEOPLE)}
        assert duplicate not in {str(p["id"]) for p in topology.supabase.rows(PEOPLE)}  # held back
        with topology.hub.connect() as conn:
            held = conn.execute("""select reason from sync.quarantine where record_id = %s
                                   and resolved_at is null""", (duplicate,)).fetchall()
        assert held and "grace@navy.mil" in held[0]["reason"]
        event = instance.get_latest_materialization_event(dg.AssetKey(["safety", "verdict"]))
        assert event is not None and event.asset_materialization is not None
        failing = event.asset_materialization.metadata["failing"].value
        assert any("bigquery_connection" in line for line in failing), failing
        assert any("hub/people unique_keys" in line and "grace@navy.mil" in line for line in failing), failing


# -- a sync's checks look at its window; the nightly sweep at everything -------------------------------


def _checks_alone(defs: dg.Definitions, sweep: bool) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    tags = {"sync/checks": "sweep"} if sweep else {}
    result = defs.resolve_job_def("safety_checks_job").execute_in_process(raise_on_error=False, tags=tags)
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def _corrupt_grace(topology, pending: bool) -> None:
    """Grace's golden record breaks its contract; `pending`: as a new version no store has seen yet."""
    with topology.hub.connect() as conn:
        conn.execute("""update sync.golden set data = jsonb_set(data, '{email}', '"not-an-email"'),
                               version = version + %s::int
                        where entity = 'people' and data->>'first_name' = 'Grace'""", (int(pending),))


def _age_out_of_the_window(topology) -> None:
    """Ten later runs that touched nothing: the records of the first runs are out of the checks' window."""
    for i in range(Thresholds().recent_runs):
        topology.hub.start_run(f"later-{i}", "test")


def test_the_window_validates_what_will_be_published_and_the_sweep_everything(synced, topology):
    _age_out_of_the_window(topology)
    _corrupt_grace(topology, pending=False)  # at rest, seen by every store: nothing will send it anywhere
    window = _checks_alone(synced.defs, sweep=False)
    assert window[("safety/preflight", "people_contract")].passed
    swept = _checks_alone(synced.defs, sweep=True)[("safety/preflight", "people_contract")]
    assert not swept.passed and "email" in (swept.description or "")
    _corrupt_grace(topology, pending=True)  # a new version every store has still to receive: it would spread
    verdict = safety.pending_golden_contract(topology.hub, PEOPLE, [], ["local_db", "supabase"])
    assert verdict.status is Status.FAIL and verdict.metadata["failure_cases"][0]["failure_case"] == "not-an-email"
    result = run_job(synced.defs, "sync_with_safety_check")
    assert not result.success
    assert "not-an-email" not in {p["email"] for p in topology.local_db.rows(PEOPLE)}


def test_a_published_version_the_hub_contract_validated_is_not_validated_again(synced, topology):
    recent = topology.hub.recent_run_ids(Thresholds().recent_runs)
    with topology.hub.connect() as conn:
        ids = [r["record_id"] for r in conn.execute(
            """select distinct record_id from sync.record_outcomes where run_id = any(%s) and entity = 'people'
               and stage = 'publish' and store = 'supabase' order by 1""", (recent,))]
    published = len(ids)
    assert published > 0
    # The syncs' own hub checks validated each version they resolved, then passed over their runs.
    trusted = safety.held_back(topology.hub, "supabase", PEOPLE, recent, "safety/preflight:people_contract")
    assert trusted.status is Status.PASS, trusted
    assert (trusted.metadata["rows"], trusted.metadata["validated_by_the_hub_contract"]) == (0, published)
    alone = safety.held_back(topology.hub, "supabase", PEOPLE, recent, "a check that passed over nothing")
    assert (alone.metadata["rows"], alone.metadata["validated_by_the_hub_contract"]) == (published, 0)
    # A version no cleared run resolved (here written behind the sync's back) is validated, and fails.
    with topology.hub.connect() as conn:
        conn.execute("""update sync.golden set data = jsonb_set(data, '{email}', '"not-an-email"'),
                               version = version + 1 where entity = 'people' and record_id = %s""", (ids[0],))
    verdict = safety.held_back(topology.hub, "supabase", PEOPLE, recent, "safety/preflight:people_contract")
    assert verdict.status is Status.FAIL and verdict.metadata["failure_cases"][0]["failure_case"] == "not-an-email"
    assert verdict.metadata["validated_by_the_hub_contract"] == published - 1


def test_the_window_sees_what_its_runs_applied_twice_and_the_conflicts_they_recorded(synced, topology):
    _edit_grace_on_both_sides(synced, topology)
    recent = topology.hub.recent_run_ids(Thresholds().recent_runs)
    assert safety.conflicts_recorded(topology.hub, PEOPLE, recent).status is Status.PASS
    with topology.hub.connect() as conn:
        conn.execute("""update sync.conflicts set incoming_side = jsonb_set(incoming_side, '{data,city}', '"Oslo"'),
                                                 golden_side = jsonb_set(golden_side, '{data,city}', '"Oslo"')""")
        conn.execute("""insert into sync.golden_history (entity, record_id, version, data, deleted, content_hash,
                                                         origin_store, origin_modified_at)
                        select entity, record_id, version + 100, data, deleted, content_hash, origin_store,
                               origin_modified_at
                        from sync.golden_history where entity = 'people' and data->>'first_name' = 'Grace'
                        order by version desc limit 1""")
    assert safety.conflicts_recorded(topology.hub, PEOPLE, recent).status is Status.FAIL
    assert safety.applied_once(topology.hub, PEOPLE, recent).status is Status.FAIL
    assert safety.conflicts_recorded(topology.hub, PEOPLE, []).status is Status.PASS  # no run in the window
    assert safety.applied_once(topology.hub, PEOPLE, []).status is Status.PASS


def test_the_window_finds_a_held_back_duplicate_and_a_record_that_never_arrived(synced, topology):
    with psycopg.connect(topology.local_dsn) as conn:
        twin = insert_person(conn, first_name="Twin", email="grace@navy.mil")
    assert not run_job(synced.defs).success  # held back by the resolve; unique_keys fails, the verdict is UNSAFE
    assert twin not in {str(p["id"]) for p in topology.supabase.rows(PEOPLE)}
    recent = topology.hub.recent_run_ids(Thresholds().recent_runs)
    verdict = safety.unique_keys_in_window(topology.hub, PEOPLE, recent)
    assert verdict.status is Status.FAIL and verdict.metadata["duplicates"] == {"local_db": ["grace@navy.mil"]}
    held = safety.delivered(topology.hub, "local_db", PEOPLE, recent)  # the twin waits in its source's quarantine
    assert held.status is Status.WARN and held.metadata["quarantined_ids"] == [twin]
    assert safety.delivered(topology.hub, "supabase", PEOPLE, recent).status is Status.PASS
    with topology.hub.connect() as conn:  # the hub forgets that Supabase received a record: no error says why
        conn.execute("""delete from sync.record_state where store = 'supabase' and entity = 'people'
                        and record_id = (select record_id from sync.golden where entity = 'people'
                                         and data->>'first_name' = 'Grace')""")
    verdict = safety.delivered(topology.hub, "supabase", PEOPLE, recent)
    assert verdict.status is Status.FAIL and len(verdict.metadata["missing"]) == 1


def test_the_checks_of_a_sync_list_no_whole_store(synced, topology, twenty_standin, twenty_client):
    twenty_client.batch_create("people", [{"name": {"firstName": f"Many{i}"},
                                           "emails": {"primaryEmail": f"many{i}@example.com"}} for i in range(150)])
    assert run_job(synced.defs).success

    def twenty_requests(sweep: bool) -> int:
        before = twenty_standin.stats()["requests"]
        evaluations = _checks_alone(synced.defs, sweep)
        assert all(e.passed for e in evaluations.values()), [e.description for e in evaluations.values()
                                                            if not e.passed]
        return twenty_standin.stats()["requests"] - before

    window, sweep = twenty_requests(sweep=False), twenty_requests(sweep=True)
    # A listing of 151 people takes 3 pages of 60, and the sweep lists each entity for three checks.
    assert sweep >= window + 9, (window, sweep)
    twenty_client.batch_create("people", [{"name": {"firstName": f"More{i}"},
                                           "emails": {"primaryEmail": f"more{i}@example.com"}} for i in range(120)])
    assert run_job(synced.defs).success
    assert twenty_requests(sweep=False) == window  # twice the people, the same requests
