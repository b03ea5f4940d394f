"""What drives the sync: the CDC and webhook-inbox sensors, the interval sync schedule, the nightly
reconciliation (followed by the checks' full sweep) and the hourly safety checks. Sensors keep an explicit
JSON cursor, derive their run keys from it, and only read a few indexed rows per tick.

The CDC sensor is the wake-up of a change: Dagster's daemon evaluates sensors at most every 5 s, and the
sensor asks for no longer interval, so a commit is noticed within about 5 s (one indexed probe per carried
table of each change log). The webhook sensor probes as often: the receiver keeps the webhooks that only echo
our own publishes to Twenty as applied (`webhooks/echoes.py`), so what it finds pending is an edit made in
Twenty. A CDC run goes ahead of the webhook and schedule runs waiting in the queue (Dagster's priority tag).

A sensor's run is targeted: it materializes what moved (the gate, the captures of the stores and entities
whose changes arrived, and downstream of them: those entities' golden records, their publishes to every
target, the sync log and the verdict), not every store. Runs are coalesced: while a run that covers the same
selection is queued, a tick skips (the queued run will read the change); while one is running, it skips
without moving its cursor, so the change is asked for again once that run ends.

No `from __future__ import annotations` here: Dagster inspects annotations at definition time.
"""

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import dagster as dg

from sync_pipeline import pipeline
from sync_pipeline.config import active_config
from sync_pipeline.defs.alerts import alert_on_run_failure
from sync_pipeline.defs.assets import PREFLIGHT_KEY, capture_key, hub_key, publish_key, sync_log_key
from sync_pipeline.defs.checks import SCOPE_TAG, SWEEP
from sync_pipeline.defs.jobs import safety_checks_job, sync_job, sync_with_safety_check
from sync_pipeline.defs.resources import HubResource
from sync_pipeline.defs.verdict import VERDICT_KEY, safety_verdict_job
from sync_pipeline.model.entities import ENTITIES
from sync_pipeline.settings import sync_interval_minutes
from sync_pipeline.stores.registry import STORES, sync_log_host

SYNC_INTERVAL_MINUTES = sync_interval_minutes()
CHANGE_LOG_STORES = [s for s in STORES if s.has_change_log]
CHANGE_LOG_KEYS = [s.key for s in CHANGE_LOG_STORES]
HINTED_STORES = [s for s in STORES if s.captures and not s.has_change_log]  # polled, and woken by webhooks


# Least seconds between two evaluations. The daemon's sensor loop runs every 5 s: 1 lets each loop probe.
CDC_PROBE_SECONDS = WEBHOOK_PROBE_SECONDS = 1
CDC_PRIORITY = {"dagster/priority": "1"}  # other runs have 0

QUEUED = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED}
RUNNING = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}


def _run_key(prefix: str, state: dict) -> str:
    return f"{prefix}:{hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]}"


def targeted_selection(moved: Iterable[tuple[str, str]]) -> list[dg.AssetKey]:
    """The assets of a run for changes of these (store, entity) pairs: the gate, their captures, the golden
    records of their entities, those entities' publishes to every target, the sync log and the verdict."""
    moved = sorted(set(moved))
    names = {name for _, name in moved}
    entities = [e for e in ENTITIES if e.name in names]
    keys = [PREFLIGHT_KEY, *(capture_key(store, e) for store, name in moved for e in entities if e.name == name)]
    keys += [hub_key(e) for e in entities]
    keys += [publish_key(s.key, e) for e in entities for s in STORES if s.publishes]
    host = sync_log_host()
    return [*keys, *([sync_log_key(host)] if host is not None else []), VERDICT_KEY]


def covering_run(instance: dg.DagsterInstance, job_name: str, selection: list[dg.AssetKey]
                 ) -> dg.DagsterRun | None:
    """A queued or running run of the job that materializes at least this selection (a whole-job run covers
    every one); a queued one first, as it will still read what moved."""
    runs = instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=[*QUEUED, *RUNNING]))
    covering = [r for r in runs if r.asset_selection is None or set(selection) <= set(r.asset_selection)]
    return next((r for r in covering if r.status in QUEUED), covering[0] if covering else None)


def coalesced(context: dg.SensorEvaluationContext, selection: list[dg.AssetKey], moved_cursor: str,
              kept_cursor: str | None) -> dg.SensorResult | None:
    """None when no run of the same selection is queued or running; else the tick's skip: with the cursor
    moved past the change when the run is still queued (it will read it), kept when it is already running."""
    run = covering_run(context.instance, sync_with_safety_check.name, selection)
    if run is None:
        return None
    queued = run.status in QUEUED
    return dg.SensorResult(
        skip_reason=dg.SkipReason(f"run {run.run_id} of the same selection is {run.status.value.lower()}: "
                                  + ("it will read these changes" if queued else
                                     "these changes are asked for again once it ends")),
        cursor=moved_cursor if queued else kept_cursor)


@dg.sensor(
    job=sync_with_safety_check,
    minimum_interval_seconds=CDC_PROBE_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    required_resource_keys={"hub", *CHANGE_LOG_KEYS},
    description="Starts a sync when a store's change log has moved (CDC watermark).",
)
def cdc_sensor(context: dg.SensorEvaluationContext, **resources):
    # Dagster passes required resources as keyword arguments when a sensor is invoked directly (tests),
    # and on `context.resources` when the daemon evaluates it.
    resources = resources or {key: getattr(context.resources, key) for key in ("hub", *CHANGE_LOG_KEYS)}
    seen = json.loads(context.cursor) if context.cursor else {}
    positions = {}
    hub = resources["hub"].hub()
    for spec in CHANGE_LOG_STORES:
        resource = resources[spec.key]
        if resource.configured:
            store = resource.store(hub)
            for entity in ENTITIES:
                if active_config().carries(spec.key, entity.name):
                    positions[f"{spec.key}:{entity.name}"] = store.latest_change(entity)
    moved = {k: v for k, v in positions.items() if v is not None and v != seen.get(k)}
    if not moved:
        return dg.SkipReason("no new changes in the change logs")
    selection = targeted_selection((store, entity) for store, entity in (key.split(":", 1) for key in moved))
    cursor = json.dumps({**seen, **positions}, sort_keys=True)
    return coalesced(context, selection, cursor, context.cursor) or dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=_run_key("cdc", moved), asset_selection=selection,
                                    tags={"sync/trigger": "cdc", "sync/changed": ",".join(sorted(moved)),
                                          **CDC_PRIORITY})],
        cursor=cursor)


@dg.sensor(
    job=sync_with_safety_check,
    minimum_interval_seconds=WEBHOOK_PROBE_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a sync when Twenty webhooks wait in the hub inbox.",
)
def webhook_inbox_sensor(context: dg.SensorEvaluationContext, hub: HubResource):
    seen = json.loads(context.cursor) if context.cursor else {"hint_id": 0}
    inbox = hub.hub()
    latest = inbox.latest_hint()
    if latest <= seen["hint_id"]:
        return dg.SkipReason("no new webhook hints in the inbox")
    # The store and entity pairs whose hints wait (one indexed row each): an echo of a publish of people
    # runs people's steps, not every entity's.
    pairs = [(s.key, e.name) for s in HINTED_STORES for e in ENTITIES if active_config().carries(s.key, e.name)]
    hinted = [(store, name) for store, name in pairs if inbox.pending_webhooks(store, name, limit=1)]
    selection = targeted_selection(hinted or pairs)
    cursor = json.dumps({"hint_id": latest})
    return coalesced(context, selection, cursor, context.cursor) or dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"inbox:{latest}", asset_selection=selection,
                                    tags={"sync/trigger": "webhook"})],
        cursor=cursor)


sync_schedule = dg.ScheduleDefinition(
    name="sync_schedule",
    job=sync_with_safety_check,
    cron_schedule=f"*/{SYNC_INTERVAL_MINUTES} * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={"sync/trigger": "poll"},
    description=f"Syncs every store every {SYNC_INTERVAL_MINUTES} minutes (SYNC_INTERVAL_MINUTES): the "
                f"stores without a change feed (Twenty's polling by updatedAt) are read only by this.",
)

hourly_safety_checks = dg.ScheduleDefinition(
    name="hourly_safety_checks",
    job=safety_checks_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Runs every safety check, so the dashboard is never older than an hour.",
)


@dg.op(required_resource_keys={"hub", "sync_settings", *(s.key for s in STORES)})
def reconcile_stores(context: dg.OpExecutionContext) -> None:
    """Capture and resolve everything pending, compare every store with the hub, repair, publish."""
    resources = context.resources
    hub = resources.hub.hub()
    settings = resources.sync_settings.settings()
    run_id = context.run.run_id
    hub.start_run(run_id, "schedule:nightly_reconciliation")
    configured = [s for s in STORES if getattr(resources, s.key).configured]
    stores = {s.key: getattr(resources, s.key).store(hub) for s in configured}
    sources = [stores[s.key] for s in configured if s.captures]
    for entity in ENTITIES:
        for store in sources:
            pipeline.capture(hub, store, entity, run_id, settings)
        pipeline.resolve(hub, entity, run_id, settings)
        for spec in configured:
            store = stores[spec.key]
            stats = pipeline.reconcile(hub, store, entity, run_id, settings)
            context.log.info(f"{store.name}/{entity.name}: {stats}")
            hub.add_run_counts(run_id, f"reconcile:{store.name}:{entity.name}", stats.__dict__)
            if stats.refused_deletes:
                context.log.warning(f"{stats.refused_deletes} {entity.name} absent from {store.name}: too many "
                                    "to trust, nothing deleted (see the error log)")
        pipeline.resolve(hub, entity, run_id, settings)
        for spec in configured:
            if spec.publishes:
                pipeline.publish(hub, stores[spec.key], entity, run_id, settings)


@dg.job(executor_def=dg.in_process_executor,
        description="Full compare of every store with the hub: repairs what incremental sync missed.")
def reconciliation_job():
    reconcile_stores()


nightly_reconciliation = dg.ScheduleDefinition(
    name="nightly_reconciliation",
    job=reconciliation_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly full reconciliation of every store against the hub.",
)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[reconciliation_job],
                      request_job=safety_checks_job, default_status=dg.DefaultSensorStatus.RUNNING,
                      description="After the nightly reconciliation, every safety check looks at everything the hub "
                                  "and the stores hold (a sync's checks look at its window only).")
def sweep_after_reconciliation(context: dg.RunStatusSensorContext):
    return dg.RunRequest(run_key=f"sweep:{context.dagster_run.run_id}",
                         tags={"sync/trigger": "nightly-sweep", SCOPE_TAG: SWEEP})


SYNC_JOBS: list[Any] = [sync_job, sync_with_safety_check, reconciliation_job]  # the runs the hub's run log records


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=SYNC_JOBS,
                      default_status=dg.DefaultSensorStatus.RUNNING,
                      description="Closes the hub's record of a finished run.")
def run_succeeded(context: dg.RunStatusSensorContext, hub: HubResource):
    hub.hub().finish_run(context.dagster_run.run_id, "success")


@dg.run_failure_sensor(monitored_jobs=SYNC_JOBS, default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Closes the hub's record of a failed run.")
def run_failed(context: dg.RunFailureSensorContext, hub: HubResource):
    hub.hub().finish_run(context.dagster_run.run_id, "failure")


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[safety_checks_job],
                      request_job=safety_verdict_job, default_status=dg.DefaultSensorStatus.RUNNING,
                      description="After a run of the checks alone, the verdict is read again from their results.")
def verdict_after_safety_checks(context: dg.RunStatusSensorContext):
    return dg.RunRequest(run_key=f"verdict:{context.dagster_run.run_id}", tags={"sync/trigger": "safety-checks"})


@dg.run_failure_sensor(monitored_jobs=[safety_checks_job, sync_with_safety_check], request_job=safety_verdict_job,
                       default_status=dg.DefaultSensorStatus.RUNNING,
                       description="After a run that failed before its verdict (the gate stopped it, or the checks "
                                   "found a failure), the verdict is read again so that it shows the failure.")
def verdict_after_failed_checks(context: dg.RunFailureSensorContext):
    latest = context.instance.get_latest_materialization_event(VERDICT_KEY)
    if latest is not None and latest.run_id == context.dagster_run.run_id:
        return dg.SkipReason("the run recorded its own verdict")
    return dg.RunRequest(run_key=f"verdict:{context.dagster_run.run_id}", tags={"sync/trigger": "safety-checks"})


SENSORS = [cdc_sensor, webhook_inbox_sensor, run_succeeded, run_failed, sweep_after_reconciliation,
           verdict_after_safety_checks,
           verdict_after_failed_checks, alert_on_run_failure]
SCHEDULES = [sync_schedule, hourly_safety_checks, nightly_reconciliation]
JOBS = [reconciliation_job]
