"""The safety verdict asset: evaluated with every sync, from the same results the dashboard shows and the
safety command prints; an UNSAFE verdict or a failed write fails the run."""

from __future__ import annotations

import dagster as dg
import psycopg

from sync_pipeline.commands.safety import refresh_verdict, run_checks
from sync_pipeline.defs.verdict import SAFE_CHECK, VERDICT_KEY
from sync_pipeline.safety.verdict import overall
from sync_pipeline_tests.helpers import insert_person


def _verdict(instance: dg.DagsterInstance) -> dict[str, object]:
    event = instance.get_latest_materialization_event(VERDICT_KEY)
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _started(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_START" and e.step_key]


def test_every_sync_evaluates_the_checks_and_ends_with_the_verdict(four_stores, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Grace", email="grace@navy.mil")
    with dg.DagsterInstance.ephemeral() as instance:
        result = four_stores.defs.resolve_job_def("sync_with_safety_check").execute_in_process(instance=instance)
        assert result.success
        evaluated = {(e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations()}
        defined = {(k.asset_key.to_user_string(), k.name)
                   for k in four_stores.defs.resolve_asset_graph().asset_check_keys}
        assert evaluated == defined  # no check of the code location is left "Not evaluated" by a sync
        steps = _started(result)
        assert steps[-1] == "safety__verdict"  # after every check of the run
        verdict = _verdict(instance)
        assert verdict["verdict"] == "SAFE", verdict["failing"]
        with dg.DagsterInstance.ephemeral() as other:  # the command, on its own instance, says the same
            assert overall(run_checks(four_stores.defs, other)) == verdict["verdict"]


def test_a_broken_store_fails_the_run_and_the_verdict_says_why(four_stores, topology):
    with dg.DagsterInstance.ephemeral() as instance:
        sync = four_stores.defs.resolve_job_def("sync_job")
        assert sync.execute_in_process(instance=instance).success
        with psycopg.connect(topology.supabase_dsn) as conn:
            conn.execute("drop trigger people_sync_cdc on public.people")
        lines = run_checks(four_stores.defs, instance)  # the command's run: FAIL on the dropped trigger
        assert overall(lines) == "UNSAFE"
        refresh_verdict(four_stores.defs, instance)
        verdict = _verdict(instance)
        assert verdict["verdict"] == "UNSAFE"
        assert any("supabase_people_capture_installed" in line for line in verdict["failing"])
        # The next sync does not evaluate the gate's checks: the FAIL stays visible until one passes.
        result = sync.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        check = next(e for e in result.get_asset_check_evaluations() if e.check_name == SAFE_CHECK)
        assert not check.passed and "UNSAFE" in (check.description or "")
        assert _verdict(instance)["verdict"] == "UNSAFE"


def test_a_record_that_fails_to_write_fails_the_run_and_names_the_record(four_stores, topology):
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("alter table people add constraint no_mallory check (first_name <> 'Mallory')")
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Mallory", email="mallory@example.com")
    with dg.DagsterInstance.ephemeral() as instance:
        result = four_stores.defs.resolve_job_def("sync_job").execute_in_process(instance=instance,
                                                                                raise_on_error=False)
        assert not result.success
        failures = str(_verdict(instance)["run_failures"])
        assert "local_db" in failures and "no_mallory" in failures
        logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
        assert any("no_mallory" in message and "local_db" in message for message in logged)


def test_a_gate_stop_requests_a_fresh_verdict(four_stores, topology):
    from sync_pipeline.defs.automation import verdict_after_failed_checks

    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Grace", email="grace@navy.mil")
    with dg.DagsterInstance.ephemeral() as instance:
        gated = four_stores.defs.resolve_job_def("sync_with_safety_check")
        assert gated.execute_in_process(instance=instance).success
        with topology.hub.connect() as conn:  # the hub's integrity broken: the gate stops the next sync
            conn.execute("""update sync.golden set data = jsonb_set(data, '{email}', '"not-an-email"'),
                                   version = version + 1
                            where entity = 'people'""")
        stopped = gated.execute_in_process(instance=instance, raise_on_error=False)
        assert not stopped.success and VERDICT_KEY.to_user_string() not in {
            e.asset_key.to_user_string() for e in stopped.get_asset_materialization_events()}
        failure = next(e for e in stopped.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="verdict_after_failed_checks", dagster_instance=instance, dagster_run=stopped.dagster_run,
            dagster_event=failure).for_run_failure()
        request = verdict_after_failed_checks(context)
        assert isinstance(request, dg.RunRequest)
        refresh_verdict(four_stores.defs, instance)  # what the requested run does
        verdict = _verdict(instance)
        assert verdict["verdict"] == "UNSAFE"
        assert any("people_contract" in line for line in verdict["failing"])


def test_a_run_queued_behind_a_sync_does_not_spoil_its_verdict(four_stores):
    """Dagster records a planned (not yet run) check for a queued run; the verdict reads evaluations only."""
    with dg.DagsterInstance.ephemeral() as instance:
        assert four_stores.defs.resolve_job_def("sync_with_safety_check").execute_in_process(
            instance=instance).success
        job = four_stores.defs.resolve_job_def("safety_checks_job")
        instance.create_run_for_job(job, run_config={})  # created, never executed: its checks are planned
        refresh_verdict(four_stores.defs, instance)
        verdict = _verdict(instance)
        assert verdict["verdict"] == "SAFE", verdict["warning"]
