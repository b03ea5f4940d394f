"""Sensors, schedules, the nightly reconciliation and an interrupted run, against real servers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import psycopg
from dagster._core.run_coordinator import QueuedRunCoordinator

from sync_pipeline import pipeline
from sync_pipeline.defs.assets import PREFLIGHT_KEY, capture_key, hub_key, publish_key
from sync_pipeline.defs.automation import (
    cdc_sensor,
    hourly_safety_checks,
    nightly_reconciliation,
    sweep_after_reconciliation,
    sync_schedule,
    webhook_inbox_sensor,
)
from sync_pipeline.defs.verdict import VERDICT_KEY
from sync_pipeline.model.entities import entity
from sync_pipeline.stores.base import live_hashes
from sync_pipeline_tests.helpers import SETTINGS, insert_person, people, sync_once

PEOPLE, COMPANIES = entity("people"), entity("companies")


def tick(sensor, instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return sensor(context)


def test_cdc_sensor_requests_a_run_for_what_moved_when_a_change_log_moves(four_stores, topology):
    resources = four_stores.resources
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(cdc_sensor, instance, resources)
        assert isinstance(first, dg.SkipReason)
        with psycopg.connect(topology.supabase_dsn) as conn:
            insert_person(conn)
        result = tick(cdc_sensor, instance, resources)
        [request] = result.run_requests
        cursor = json.loads(result.cursor)
        assert cursor["supabase:people"] and request.run_key.startswith("cdc:")
        assert request.tags["sync/changed"] == "supabase:people"
        # Supabase's people and what is downstream of them; no other store's capture, no other entity
        selection = set(request.asset_selection)
        assert {PREFLIGHT_KEY, capture_key("supabase", PEOPLE), hub_key(PEOPLE), publish_key("twenty", PEOPLE),
                publish_key("bigquery", PEOPLE), dg.AssetKey(["bigquery", "sync_log"]), VERDICT_KEY} <= selection
        assert capture_key("local_db", PEOPLE) not in selection and hub_key(COMPANIES) not in selection
        # the same position again: nothing to do; the run key is derived, so a replayed tick dedupes
        again = tick(cdc_sensor, instance, resources, result.cursor)
        assert isinstance(again, dg.SkipReason)
        replay = tick(cdc_sensor, instance, resources)
        assert replay.run_requests[0].run_key == request.run_key


def test_a_run_of_the_same_selection_queued_or_running_coalesces_the_ticks(four_stores, topology):
    resources = four_stores.resources
    job = four_stores.defs.resolve_job_def("sync_with_safety_check")
    with dg.DagsterInstance.ephemeral() as instance:
        start = None  # every change log as yet unread
        with psycopg.connect(topology.supabase_dsn) as conn:
            insert_person(conn)
        [request] = tick(cdc_sensor, instance, resources, start).run_requests
        selection = set(request.asset_selection)
        queued = instance.create_run_for_job(job.get_subset(asset_selection=selection), asset_selection=selection,
                                             status=dg.DagsterRunStatus.NOT_STARTED)
        # queued (not started yet): it will read the change, so the tick skips and moves its cursor past it
        skipped = tick(cdc_sensor, instance, resources, start)
        assert not skipped.run_requests and queued.run_id in skipped.skip_reason.skip_message
        assert json.loads(skipped.cursor)["supabase:people"]
        # running: it may have read its store already, so the tick skips and keeps its cursor (asked again later)
        instance.report_run_failed(queued)
        running = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)  # the whole job covers it
        kept = tick(cdc_sensor, instance, resources, start)
        assert not kept.run_requests and running.run_id in kept.skip_reason.skip_message and kept.cursor is None
        # another store moved: not covered by a run of Supabase's people (once the whole-job run has ended)
        instance.report_run_failed(running)
        with psycopg.connect(topology.local_dsn) as conn:
            insert_person(conn)
        instance.create_run_for_job(job.get_subset(asset_selection=selection), asset_selection=selection,
                                    status=dg.DagsterRunStatus.NOT_STARTED)
        [other] = tick(cdc_sensor, instance, resources, skipped.cursor).run_requests
        assert other.tags["sync/changed"] == "local_db:people"


def test_the_nightly_reconciliation_is_followed_by_the_checks_full_sweep(four_stores):
    with dg.DagsterInstance.ephemeral() as instance:
        run = instance.create_run_for_job(four_stores.defs.resolve_job_def("reconciliation_job"),
                                          status=dg.DagsterRunStatus.SUCCESS)
        with dg.build_run_status_sensor_context(
                sensor_name="sweep_after_reconciliation", dagster_instance=instance, dagster_run=run,
                dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=run.job_name)
        ) as context:
            request = sweep_after_reconciliation(context)
    assert request.tags["sync/checks"] == "sweep" and sweep_after_reconciliation.job_name == "safety_checks_job"


def test_webhook_inbox_sensor_requests_a_run_per_new_hint(four_stores, topology):
    resources = four_stores.resources
    with dg.DagsterInstance.ephemeral() as instance:
        assert isinstance(tick(webhook_inbox_sensor, instance, resources),
                          dg.SkipReason)
        topology.hub.enqueue_webhook("twenty", "people", "k1", "00000000-0000-0000-0000-000000000001", {})
        result = tick(webhook_inbox_sensor, instance, resources)
        assert [r.run_key for r in result.run_requests] == [f"inbox:{json.loads(result.cursor)['hint_id']}"]
        selection = set(result.run_requests[0].asset_selection)
        assert capture_key("twenty", PEOPLE) in selection and capture_key("supabase", PEOPLE) not in selection
        assert isinstance(tick(webhook_inbox_sensor, instance, resources, result.cursor), dg.SkipReason)


def test_webhook_inbox_sensor_runs_only_the_entities_whose_hints_wait(four_stores, topology):
    resources = four_stores.resources
    with dg.DagsterInstance.ephemeral() as instance:
        topology.hub.enqueue_webhook("twenty", "companies", "c1", "00000000-0000-0000-0000-00000000000c", {})
        [request] = tick(webhook_inbox_sensor, instance, resources).run_requests
        selection = set(request.asset_selection)
        assert {PREFLIGHT_KEY, capture_key("twenty", COMPANIES), hub_key(COMPANIES), VERDICT_KEY} <= selection
        assert capture_key("twenty", PEOPLE) not in selection and hub_key(PEOPLE) not in selection
        # a hint of people besides: the next run reads both
        topology.hub.enqueue_webhook("twenty", "people", "p1", "00000000-0000-0000-0000-00000000000d", {})
        [both] = tick(webhook_inbox_sensor, instance, resources).run_requests
        assert {capture_key("twenty", COMPANIES), capture_key("twenty", PEOPLE)} <= set(both.asset_selection)


def test_a_cdc_run_goes_ahead_of_a_webhook_run_waiting_in_the_queue(four_stores, topology):
    resources = four_stores.resources
    job = four_stores.defs.resolve_job_def("sync_with_safety_check")
    with dg.DagsterInstance.ephemeral() as instance:
        topology.hub.enqueue_webhook("twenty", "people", "p1", "00000000-0000-0000-0000-00000000000e", {})
        [hinted] = tick(webhook_inbox_sensor, instance, resources).run_requests
        instance.create_run_for_job(job.get_subset(asset_selection=set(hinted.asset_selection)),
                                    asset_selection=set(hinted.asset_selection), tags=hinted.tags,
                                    status=dg.DagsterRunStatus.NOT_STARTED)
        with psycopg.connect(topology.local_dsn) as conn:
            insert_person(conn)
        # not covered by the queued run (another store's capture): a run of its own, dequeued first
        [request] = tick(cdc_sensor, instance, resources).run_requests
        assert request.tags["sync/changed"] == "local_db:people"
        assert int(request.tags["dagster/priority"]) > int(hinted.tags.get("dagster/priority", "0"))


def test_the_projects_instance_looks_at_its_queue_every_second_and_runs_one_sync_at_a_time(tmp_path):
    """What bounds the latency of a change besides the run itself: the CDC sensor is evaluated on every loop
    of the daemon (every 5 s), and the queue is looked at every second; the queue still runs one run at a
    time, which the coalescing of the sensors relies on."""
    (tmp_path / "dagster.yaml").write_text((Path(__file__).parent.parent / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        queue = coordinator.get_run_queue_config()
        assert coordinator.dequeue_interval_seconds == 1 and queue.max_concurrent_runs == 1
    assert cdc_sensor.minimum_interval_seconds <= 5


def test_schedules():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 25, 10, 5, tzinfo=timezone.utc))
    assert sync_schedule.cron_schedule == "*/5 * * * *"
    assert sync_schedule.job_name == "sync_with_safety_check"
    assert sync_schedule.evaluate_tick(context).run_requests[0].tags["sync/trigger"] == "poll"
    assert hourly_safety_checks.job_name == "safety_checks_job"
    assert nightly_reconciliation.cron_schedule == "0 2 * * *"


def _reconcile(four_stores) -> dg.ExecuteInProcessResult:
    result = four_stores.defs.resolve_job_def("reconciliation_job").execute_in_process(raise_on_error=False)
    assert result.success
    return result


def test_reconciliation_turns_a_hard_delete_nobody_reported_into_a_delete(four_stores, topology, twenty_client,
                                                                         twenty_store):
    stores = [twenty_store, topology.supabase, topology.local_db]
    keep = [twenty_client.create("people", {"name": {"firstName": f"P{i}"},
                                            "emails": {"primaryEmail": f"p{i}@example.com"}}) for i in range(25)]
    sync_once(topology.hub, stores)
    twenty_client.destroy("people", keep[0]["id"])  # no webhook, invisible to polling
    sync_once(topology.hub, stores)
    assert len(people(topology.local_db)) == 25
    _reconcile(four_stores)
    assert len(people(topology.local_db)) == 24 and len(people(topology.supabase)) == 24


def test_reconciliation_refuses_to_delete_when_a_listing_comes_back_nearly_empty(four_stores, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        for i in range(10):
            insert_person(conn, email=f"p{i}@example.com")
    sync_once(topology.hub, [topology.supabase, topology.local_db])
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("select set_config('sync_pipeline.writer', 'sync', true)")  # wiped behind the sync's back
        conn.execute("delete from people")
    _reconcile(four_stores)
    assert len(people(topology.supabase)) == 10  # nothing was deleted elsewhere
    with topology.hub.connect() as conn:
        [error] = conn.execute("select operation, message from sync.errors").fetchall()
    assert error["operation"] == "reconcile" and "10 of 10 people absent from local_db" in error["message"]


def test_reconciliation_resends_drifted_rows_and_takes_in_rows_it_never_saw(four_stores, topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Original")
    sync_once(topology.hub, [topology.supabase, topology.local_db])
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("select set_config('sync_pipeline.writer', 'sync', true)")  # no trigger sees these
        conn.execute("update people set first_name = 'Drifted' where id = %s", (pid,))
        unseen = insert_person(conn, first_name="Unseen")
    _reconcile(four_stores)
    local = {str(p["id"]): p["first_name"] for p in people(topology.local_db)}
    supabase = {str(p["id"]): p["first_name"] for p in people(topology.supabase)}
    assert local == supabase == {pid: "Original", unseen: "Unseen"}


class FailingAfter:
    """A store whose writes fail after the first batch, as a run stopped mid-way."""

    def __init__(self, store, batches: int) -> None:
        self._store, self._left = store, batches
        self.name = store.name

    def __getattr__(self, name):
        return getattr(self._store, name)

    def apply(self, entity, records):
        if self._left == 0:
            raise KeyboardInterrupt("run stopped")
        self._left -= 1
        return self._store.apply(entity, records)


def test_a_run_stopped_mid_way_leaves_everything_consistent_and_the_next_run_finishes(topology):
    with psycopg.connect(topology.supabase_dsn) as conn:
        for i in range(6):
            insert_person(conn, email=f"p{i}@example.com")
    pipeline.capture(topology.hub, topology.supabase, PEOPLE, "r1", SETTINGS)
    pipeline.resolve(topology.hub, PEOPLE, "r1", SETTINGS)
    try:
        pipeline.publish(topology.hub, FailingAfter(topology.local_db, batches=1), PEOPLE, "r1", SETTINGS,
                         batch_size=2)
    except KeyboardInterrupt:
        pass
    assert len(people(topology.local_db)) == 2  # the first batch landed, and the hub knows exactly that
    assert len(topology.hub.unseen_by("local_db", "people", 100)) == 4
    sync_once(topology.hub, [topology.supabase, topology.local_db])
    assert people(topology.local_db) == people(topology.supabase)
    assert topology.local_db.inventory(PEOPLE) == live_hashes(PEOPLE, topology.hub.golden_snapshot("people"))


def test_the_run_status_sensor_closes_the_hubs_run_record(four_stores, topology):
    from sync_pipeline.defs.automation import run_succeeded

    with dg.DagsterInstance.ephemeral() as instance:
        result = four_stores.defs.resolve_job_def("sync_job").execute_in_process(instance=instance)
        with dg.build_run_status_sensor_context(
                sensor_name="run_succeeded", dagster_instance=instance, dagster_run=result.dagster_run,
                dagster_event=next(e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS"),
                resources={"hub": four_stores.resources["hub"]}) as context:
            run_succeeded(context)
    with topology.hub.connect() as conn:
        run = conn.execute("select status, finished_at, trigger from sync.runs where run_id = %s",
                           (result.run_id,)).fetchone()
    assert run["status"] == "success" and run["finished_at"] is not None and run["trigger"] == "manual"


def test_reconciliation_never_takes_deletes_from_bigquery_it_resends_instead(four_stores, topology,
                                                                            bigquery_store):
    with psycopg.connect(topology.supabase_dsn) as conn:
        for i in range(30):
            insert_person(conn, email=f"p{i}@example.com")
    assert four_stores.defs.resolve_job_def("sync_job").execute_in_process().success
    table = f"`{bigquery_store.client.project}.{bigquery_store.dataset_id}.people`"
    victim = str(people(topology.supabase)[0]["id"])
    bigquery_store.client.query(f"DELETE FROM {table} WHERE id = '{victim}'").result()  # an analyst's slip
    bigquery_store.client.query(
        f"INSERT INTO {table} (id, first_name, email, hub_version) "
        f"VALUES ('{__import__('uuid').uuid4()}', 'Stray', 'stray@example.com', 1)").result()
    _reconcile(four_stores)
    assert len(people(topology.supabase)) == 30 and len(people(topology.local_db)) == 30
    assert victim in bigquery_store.inventory(PEOPLE)
