"""The sync driven by real Dagster: the job materializes every asset and reports what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg

from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.defs.resources import (
    HubResource,
    LocalDbResource,
    SupabaseResource,
    SyncSettingsResource,
    TwentyResource,
)
from sync_pipeline.definitions import defs
from sync_pipeline_tests.helpers import insert_person, people


def _resources(t, supabase_dsn: str | None = "default"):
    return {
        "hub": HubResource(dsn=t.local_dsn),
        "local_db": LocalDbResource(dsn=t.local_dsn),
        "supabase": SupabaseResource(dsn=t.supabase_dsn if supabase_dsn == "default" else supabase_dsn,
                                     sslmode="disable"),
        # Twenty and BigQuery not configured: these tests are about the Postgres stores
        "twenty": TwentyResource(),
        "bigquery": BigQueryStoreResource(),
        "sync_settings": SyncSettingsResource(),
    }


def _defs_with(resources) -> dg.Definitions:
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                          schedules=defs.schedules, sensors=defs.sensors, resources=resources)


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert {"supabase/people_changes", "hub/people", "local_db/people"} <= set(specs)
    assert specs["hub/people"].group_name == "hub"
    assert specs["supabase/people"].kinds >= {"supabase", "postgres"}
    synced = {k: s for k, s in specs.items() if s.group_name != "safety"}  # the gate holds no data
    assert all(s.freshness_policy is not None for s in synced.values())
    assert all(s.description for s in specs.values())


def test_dagster_definitions_validate_passes(tmp_path):
    project = Path(__file__).resolve().parents[1]
    result = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
                             "-w", str(project / "workspace.yaml")], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "DAGSTER_HOME": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_sync_job_moves_a_person_and_reports_counts(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        insert_person(conn, first_name="Grace")
    job = _defs_with(_resources(t)).resolve_job_def("sync_job")
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance)
        assert result.success
        md = {m.asset_key.to_user_string(): m.metadata for m in result.get_asset_materialization_events()
              for m in [m.materialization]}
        assert md["supabase/people_changes"]["enqueued"].value == 1
        assert md["hub/people"]["applied"].value == 1
        assert md["local_db/people"]["applied"].value == 1
        assert people(t.local_db) == people(t.supabase)
        again = job.execute_in_process(instance=instance)
        md = {m.asset_key.to_user_string(): m.metadata for m in again.get_asset_materialization_events()
              for m in [m.materialization]}
        assert md["supabase/people_changes"]["read"].value == 0
        assert md["local_db/people"]["applied"].value == 0
    with t.hub.connect() as conn:
        runs = conn.execute("select trigger, counts from sync.runs").fetchall()
    assert len(runs) == 2 and runs[0]["trigger"] == "manual"
    assert runs[0]["counts"]["publish:local_db:people"]["applied"] == 1


def test_unconfigured_store_degrades_gracefully(topology):
    t = topology
    with psycopg.connect(t.local_dsn) as conn:
        insert_person(conn)
    result = _defs_with(_resources(t, supabase_dsn=None)).resolve_job_def("sync_job").execute_in_process()
    assert result.success
    md = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
          for e in result.get_asset_materialization_events()}
    assert md["supabase/people"]["status"].value == "not configured"
    assert md["hub/people"]["applied"].value == 1


def test_a_failing_store_is_recorded_and_the_others_go_on(topology):
    t = topology
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("drop trigger people_sync_cdc on public.people")
    with psycopg.connect(t.local_dsn) as conn:
        insert_person(conn, first_name="Still synced")
    result = _defs_with(_resources(t)).resolve_job_def("sync_job").execute_in_process(raise_on_error=False)
    assert not result.success  # a failed store step fails the run (the verdict's blocking check), after the rest
    md = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
          for e in result.get_asset_materialization_events()}
    assert md["supabase/people_changes"]["status"].value == "failed"
    assert "not installed" in md["supabase/people_changes"]["error"].value
    assert [p["first_name"] for p in people(t.supabase)] == ["Still synced"]
    with t.hub.connect() as conn:
        errors = conn.execute("select store, entity, operation, error_class, run_id from sync.errors").fetchall()
    assert errors == [{"store": "supabase", "entity": "people", "operation": "capture",
                       "error_class": "CaptureNotReady", "run_id": result.run_id}]
    t.supabase.install()  # repaired: the next run goes through and closes the error
    assert _defs_with(_resources(t)).resolve_job_def("sync_job").execute_in_process().success
    with t.hub.connect() as conn:
        assert conn.execute("select resolved_at from sync.errors").fetchone()["resolved_at"] is not None
