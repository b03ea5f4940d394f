"""The production Dagster instance of dagster.yaml, run: its storage in a Postgres database of the session's
server, the queued run coordinator, run monitoring and run retries, as `sync-pipeline sandbox
--dagster-storage postgres` writes it. On it, the daemon's own code paths: a sensor tick queues a gated sync,
a run worker executes it, run monitoring fails a run whose worker died, and run retries queue it again.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Iterator

import dagster as dg
import psycopg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import consume_new_runs_for_automatic_reexecution
from dagster._daemon.monitoring import execute_run_monitoring_iteration
from dagster._daemon.sensor import execute_sensor_iteration
from dagster._utils.hosted_user_process import recon_job_from_origin
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_shared.yaml_utils import safe_load_yaml

from sync_pipeline.sandbox.dagster_instance import (
    postgres_instance_env,
    production_settings,
    write_instance_yaml,
)
from sync_pipeline_tests.helpers import insert_person, people

PROJECT_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
_numbers = itertools.count()
LOGGER = logging.getLogger(__name__)

# The code location as the daemon loads it, pointed at this test's databases (Twenty and BigQuery unset).
CODE_LOCATION = """
from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.defs.resources import (HubResource, LocalDbResource, SupabaseResource, SyncSettingsResource,
                                          TwentyResource)
from sync_pipeline_tests.fixtures.defs import defs_with

defs = defs_with({{"hub": HubResource(dsn={local!r}), "local_db": LocalDbResource(dsn={local!r}),
                  "supabase": SupabaseResource(dsn={supabase!r}, sslmode="disable"), "twenty": TwentyResource(),
                  "bigquery": BigQueryStoreResource(), "sync_settings": SyncSettingsResource()}})
"""


@pytest.fixture
def dagster_dsn(postgres_server) -> Iterator[str]:
    """Dagster's own database, as the sandbox creates it beside the stores'."""
    database = f"dagster_{os.getpid()}_{next(_numbers)}"
    yield postgres_server.create_database(database)
    postgres_server.drop_database(database)


@pytest.fixture
def instance(postgres_server, dagster_dsn, tmp_path, monkeypatch) -> Iterator[dg.DagsterInstance]:
    """A DAGSTER_HOME holding the production instance, as `sync-pipeline sandbox --dagster-storage postgres`
    writes it."""
    for name, value in postgres_instance_env(postgres_server, dagster_dsn.rsplit("/", 1)[1]).items():
        monkeypatch.setenv(name, value)
    write_instance_yaml(PROJECT_YAML, tmp_path, "postgres")
    with dg.DagsterInstance.from_config(str(tmp_path)) as production:
        yield production


@pytest.fixture
def workspace(instance, topology, tmp_path) -> Iterator[WorkspaceProcessContext]:
    """The code location loaded the way the daemon sees it (in this process, so nothing needs a code server)."""
    location = tmp_path / "code_location.py"
    location.write_text(CODE_LOCATION.format(local=topology.local_dsn, supabase=topology.supabase_dsn))
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=str(location), attribute="defs", working_directory=os.getcwd()),
        location_name="sync_pipeline")
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        yield context


def test_the_instance_is_the_documented_production_one(instance):
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
    assert isinstance(instance.run_launcher, dg.DefaultRunLauncher)
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert not instance.run_retries_retry_on_asset_or_op_failure
    # The production lines are the commented ones of dagster.yaml, and the sandbox's default stays SQLite.
    assert set(production_settings(PROJECT_YAML.read_text())) == {"storage", "run_coordinator"}
    assert "storage" not in safe_load_yaml(PROJECT_YAML.read_text())


def _sensor_tick(workspace: WorkspaceProcessContext) -> dg.DagsterRun:
    """One iteration of the sensor daemon; returns the run the CDC sensor queued."""
    instance = workspace.instance
    list(execute_sensor_iteration(workspace, LOGGER, None, None))
    [cdc] = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
             if s.instigator_name == "cdc_sensor"]
    [tick] = instance.get_ticks(cdc.instigator_origin_id, cdc.selector_id)
    assert tick.status == TickStatus.SUCCESS, tick.error
    [run_id] = tick.run_ids
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.QUEUED
    assert run.job_name == "sync_with_safety_check" and run.tags["sync/trigger"] == "cdc"
    return run


def test_a_sensor_tick_queues_a_gated_sync_that_runs_on_postgres(workspace, topology, dagster_dsn):
    instance = workspace.instance
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Ada")
    run = _sensor_tick(workspace)
    # What the queue daemon and a run worker do with it (the default launcher needs a code server process to
    # start one, so the worker's own entry point runs here).
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.PIPELINE_STARTING.value, job_name=run.job_name), run.run_id)
    origin = run.job_code_origin
    assert origin is not None
    recon: ReconstructableJob = recon_job_from_origin(origin)
    result = execute_run(recon, instance.get_run_by_id(run.run_id), instance)
    assert result.success
    assert [p["first_name"] for p in people(topology.local_db)] == ["Ada"]
    # Everything Dagster recorded is in the Postgres database: the run, its events, the asset checks.
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    materialized = instance.get_latest_materialization_event(dg.AssetKey(["local_db", "people"]))
    assert materialized is not None and materialized.run_id == run.run_id
    with psycopg.connect(dagster_dsn) as conn:
        assert conn.execute("select count(*) from runs").fetchone() == (1,)
        checks = conn.execute("select count(*) from asset_check_executions where run_id = %s",
                              (run.run_id,)).fetchone()
        assert checks is not None and checks[0] > 0


def test_run_monitoring_fails_a_run_whose_worker_died_and_run_retries_queue_it_again(workspace, topology):
    instance = workspace.instance
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn)
    run = _sensor_tick(workspace)
    # Its worker started it and died (kill -9, lost host) longer ago than run monitoring allows: the default
    # launcher cannot see the worker, so the run's age is what finds it.
    started_at = time.time() - instance.run_monitoring_max_runtime_seconds - 60
    for event_type in (DagsterEventType.PIPELINE_STARTING, DagsterEventType.RUN_START):
        instance.report_dagster_event(DagsterEvent(event_type_value=event_type.value, job_name=run.job_name),
                                      run.run_id, timestamp=started_at)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

    list(execute_run_monitoring_iteration(workspace, LOGGER))
    record = instance.get_run_record_by_id(run.run_id)
    assert record is not None and record.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert record.dagster_run.tags.get("dagster/will_retry") == "true"

    list(consume_new_runs_for_automatic_reexecution(workspace, [record], LOGGER))
    [retry] = [r for r in instance.get_runs() if r.parent_run_id == run.run_id]
    assert retry.status == dg.DagsterRunStatus.QUEUED  # behind the one-at-a-time queue, like any run
    assert retry.tags["dagster/retry_number"] == "1" and retry.job_name == "sync_with_safety_check"
