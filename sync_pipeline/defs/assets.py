"""The asset factory: capture assets per source store x entity it carries, a hub asset per entity, publish
assets per target store x entity it carries. One group per store, so the lineage reads store -> hub -> store.

No `from __future__ import annotations` here: Dagster inspects the context annotation at definition time.
"""

from datetime import timedelta
from typing import Any, Callable

import dagster as dg

from sync_pipeline import pipeline
from sync_pipeline.config import active_config
from sync_pipeline.model.entities import ENTITIES, Entity
from sync_pipeline.redaction import redact_text
from sync_pipeline.reporting.sync_log import export_sync_log
from sync_pipeline.stores.base import StoreSpec, StoreUnavailable
from sync_pipeline.stores.registry import STORES, sync_log_host

HUB_GROUP = "hub"
PREFLIGHT_KEY = dg.AssetKey(["safety", "preflight"])  # the gate: its blocking checks guard every capture
# A store's failure is recorded and returned, not raised: a step raises when the hub itself failed (a dropped
# connection, a failover, a deadlock) or the warehouse refused the sync log. Every step is idempotent (the
# inbox dedupes, publishing skips what a store already holds), so it is tried twice more, about 5 s then 10 s
# later, before the run fails.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL,
                                 jitter=dg.Jitter.PLUS_MINUS)


def carried(spec: StoreSpec, entity: Entity) -> bool:
    """Whether the sync configuration has the store carry the entity: only then has it assets for it."""
    return active_config().carries(spec.key, entity.name)


def capture_key(store: str, entity: Entity) -> dg.AssetKey:
    return dg.AssetKey([store, f"{entity.name}_changes"])


def hub_key(entity: Entity) -> dg.AssetKey:
    return dg.AssetKey([HUB_GROUP, entity.name])


def publish_key(store: str, entity: Entity) -> dg.AssetKey:
    return dg.AssetKey([store, entity.name])


def run_trigger(context: dg.AssetExecutionContext) -> str:
    """What launched the run, for the hub's run log: a sensor, a schedule, a backfill or a person."""
    tags = context.run.tags
    for tag, label in (("dagster/sensor_name", "sensor"), ("dagster/schedule_name", "schedule")):
        if tag in tags:
            return f"{label}:{tags[tag]}"
    return "backfill" if "dagster/backfill" in tags else tags.get("sync/trigger", "manual")


def freshness(interval_minutes: int = 5) -> dg.FreshnessPolicy:
    """Fresh within a few sync intervals: WARN after three missed runs, FAIL after six."""
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=6 * interval_minutes),
                                          warn_window=timedelta(minutes=3 * interval_minutes))


def _not_configured(context: dg.AssetExecutionContext, spec: StoreSpec) -> dg.MaterializeResult:
    context.log.warning(f"{spec.label} is not configured; skipping it while the other stores sync")
    return dg.MaterializeResult(metadata={"status": "not configured"})


def _failed(context: dg.AssetExecutionContext, hub, spec: StoreSpec, entity: str, operation: str,
            exc: Exception) -> dg.MaterializeResult:
    """A store's failure goes to the error log and the metadata; the run goes on with the other stores,
    and the error checks turn red."""
    error_id = hub.record_error(store=spec.key, entity=entity, operation=operation, error=exc,
                                run_id=context.run.run_id)
    message = redact_text(f"{type(exc).__name__}: {exc}")[:500]
    context.log.error(f"{operation} of {entity} in {spec.label} failed (error #{error_id}): {message}")
    return dg.MaterializeResult(metadata={"status": "failed", "errors": 1, "error": message,
                                          "error_id": error_id})


def _run_store_step(context: dg.AssetExecutionContext, spec: StoreSpec, entity: Entity, operation: str,
                    step: Callable[..., Any]) -> dg.MaterializeResult | tuple[Any, Any, Any]:
    """Run a capture or publish step against one store: (hub, store, stats), or the materialization to
    return at once when the store is not configured or the step failed."""
    resource = getattr(context.resources, spec.key)
    if not (resource.configured or resource.misconfiguration):
        return _not_configured(context, spec)
    hub = context.resources.hub.hub()
    hub.start_run(context.run.run_id, run_trigger(context))
    try:
        if resource.misconfiguration:
            raise ValueError(f"{spec.label} is misconfigured: {resource.misconfiguration}")
        store = resource.store(hub)
        return hub, store, step(hub, store, entity, context.run.run_id, context.resources.sync_settings.settings())
    except Exception as exc:  # noqa: BLE001 - recorded, and the other stores go on syncing
        return _failed(context, hub, spec, entity.name, operation, exc)


def md_table(rows: list[dict[str, Any]], columns: list[str], width: int | None = 80) -> dg.MetadataValue:
    """Rows as a Markdown table for the UI; cells cut at `width` characters (None: whole)."""
    if not rows:
        return dg.MetadataValue.md("_none_")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = (" ".join(str(r.get(c, "")).split()).replace("|", "\\|")[:width] for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def conflict_rows(conflicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per differing field of each conflict: what the hub held (and from which store), what came in,
    and who won."""
    rows = []
    for c in conflicts:
        golden, incoming = c["golden_side"] or {}, c["incoming_side"] or {}
        for name in c["differing_fields"] or ["(deleted)"]:
            rows.append({
                "id": c["id"], "record_id": c["record_id"], "field": name, "winner": c["winner_store"],
                "resolution": c["resolution"],
                "golden": f"{(golden.get('data') or {}).get(name)!r} ({c['golden_store']})",
                "incoming": f"{(incoming.get('data') or {}).get(name)!r} ({c['incoming_store']})"})
    return rows


def build_capture_asset(spec: StoreSpec, entity: Entity, interval_minutes: int) -> dg.AssetsDefinition:
    @dg.asset(
        key=capture_key(spec.key, entity),
        deps=[PREFLIGHT_KEY],
        group_name=spec.key,
        kinds=set(spec.kinds),
        description=f"{entity.name.capitalize()} changed in {spec.label} since its cursor, validated against "
                    f"the {entity.name} contract and put in the hub's inbox; invalid records go to quarantine.",
        required_resource_keys={"hub", "sync_settings", spec.key},
        freshness_policy=freshness(interval_minutes),
        tags={"stage": "capture"},
        retry_policy=TRANSIENT_RETRY,
    )
    def _capture(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        step = _run_store_step(context, spec, entity, "capture", pipeline.capture)
        if isinstance(step, dg.MaterializeResult):
            return step
        hub, store, stats = step
        counts = {"read": stats.read, "enqueued": stats.enqueued, "replayed": stats.replayed,
                  "quarantined": stats.quarantined, "webhook_hints": stats.hints, **store.api_stats()}
        hub.add_run_counts(context.run.run_id, f"capture:{spec.key}:{entity.name}", counts)
        return dg.MaterializeResult(metadata={
            **counts,
            "batches": stats.batches,
            "cursor_before": dg.MetadataValue.json(stats.cursor_before or {}),
            "cursor_after": dg.MetadataValue.json(stats.cursor_after or {}),
            **{k: v for k, v in stats.status.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "duration_seconds": round(stats.seconds, 3),
            # The store's first capture adopted the records it held: linked, new, kept out (listed below).
            **({f"adoption_{k}": n for k, n in stats.adoption.counts().items()} if stats.adoption else {}),
            "duplicate_deliveries_24h": hub.duplicate_deliveries(spec.key, entity.name),
            # Listed on every capture until fixed at the source, whatever this run saw.
            "open_quarantine": md_table(hub.open_quarantine_rows(spec.key, entity.name),
                                        ["record_id", "reason", "quarantined_at"], width=200),
        })

    return _capture


def build_hub_asset(entity: Entity, sources: list[StoreSpec], interval_minutes: int) -> dg.AssetsDefinition:
    @dg.asset(
        key=hub_key(entity),
        group_name=HUB_GROUP,
        kinds={"postgres"},
        deps=[capture_key(s.key, entity) for s in sources],
        description=f"Golden {entity.name}: the inbox applied with version-based conflict detection, last "
                    f"write wins with a deterministic tiebreak, every conflict logged, replays ignored.",
        required_resource_keys={"hub", "sync_settings"},
        freshness_policy=freshness(interval_minutes),
        tags={"stage": "resolve"},
        retry_policy=TRANSIENT_RETRY,
    )
    def _resolve(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        hub = context.resources.hub.hub()
        hub.start_run(context.run.run_id, run_trigger(context))
        stats = pipeline.resolve(hub, entity, context.run.run_id, context.resources.sync_settings.settings())
        hub.add_run_counts(context.run.run_id, f"resolve:{entity.name}", stats.as_dict())
        counts = hub.golden_counts(entity.name)  # counted in the hub, never loaded
        return dg.MaterializeResult(metadata={
            **stats.as_dict(),
            "golden_records": counts["live"],
            "tombstones": counts["deleted"],
            "last_conflicts": md_table(conflict_rows(hub.recent_conflicts(entity.name, 5)),
                                       ["id", "record_id", "field", "golden", "incoming", "winner", "resolution"]),
        })

    return _resolve


def build_publish_asset(spec: StoreSpec, entity: Entity, interval_minutes: int) -> dg.AssetsDefinition:
    # Referenced entities are published to the same store first (companies before people).
    deps = [hub_key(entity), *(publish_key(spec.key, e) for e in ENTITIES
                               if e.name in entity.references.values() and carried(spec, e))]

    @dg.asset(
        key=publish_key(spec.key, entity),
        group_name=spec.key,
        kinds=set(spec.kinds),
        deps=deps,
        description=f"{entity.name.capitalize()} in {spec.label}: the golden records it has not seen yet, "
                    f"written idempotently (a replay changes nothing).",
        required_resource_keys={"hub", "sync_settings", spec.key},
        freshness_policy=freshness(interval_minutes),
        tags={"stage": "publish"},
        retry_policy=TRANSIENT_RETRY,
    )
    def _publish(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        step = _run_store_step(context, spec, entity, "publish", pipeline.publish)
        if isinstance(step, dg.MaterializeResult):
            return step
        hub, store, stats = step
        counts = {"read": stats.read, "applied": stats.applied, "stale": stats.stale, "errors": stats.errors,
                  **store.api_stats()}
        hub.add_run_counts(context.run.run_id, f"publish:{spec.key}:{entity.name}", counts)
        if stats.errors:
            context.log.error(f"{stats.errors} {entity.name} could not be written to {spec.label}; "
                              f"they stay pending and are retried next run: {stats.error_messages[:3]}")
        return dg.MaterializeResult(metadata={
            **counts,
            "batches": stats.batches,
            "duration_seconds": round(stats.seconds, 3),
            "open_errors": md_table(hub.recent_errors(spec.key, entity.name, 5),
                                     ["id", "record_id", "operation", "error_class", "message"]),
        })

    return _publish


def sync_log_key(host: StoreSpec) -> dg.AssetKey:
    return dg.AssetKey([host.key, "sync_log"])


def build_sync_log_asset(host: StoreSpec, publish_keys: list[dg.AssetKey],
                         interval_minutes: int) -> dg.AssetsDefinition:
    @dg.asset(
        key=sync_log_key(host),
        group_name=host.key,
        kinds=set(host.kinds),
        deps=publish_keys,
        description="The sync's own record in the warehouse: runs, per-record outcomes and conflicts, "
                    "appended idempotently, so analysts can ask what changed, who won and what failed.",
        required_resource_keys={"hub", host.key},
        freshness_policy=freshness(interval_minutes),
        tags={"stage": "publish"},
        retry_policy=TRANSIENT_RETRY,
    )
    def _sync_log(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        resource = getattr(context.resources, host.key)
        if not resource.configured:
            return _not_configured(context, host)
        hub = context.resources.hub.hub()
        try:
            export = export_sync_log(hub, resource.store(hub).tables, host.key)
        except StoreUnavailable as exc:  # recorded like any store step's failure; the verdict still comes
            return _failed(context, hub, host, "sync_log", "publish", exc)
        return dg.MaterializeResult(metadata={
            "runs": export.runs, "outcomes": export.outcomes, "conflicts": export.conflicts,
            "rows_changed": dg.MetadataValue.json(export.rows_changed),
            "cursor_before": dg.MetadataValue.json(export.cursor_before or {}),
            "cursor_after": dg.MetadataValue.json(export.cursor_after),
        })

    return _sync_log


def build_assets(stores: tuple[StoreSpec, ...] = STORES, interval_minutes: int = 5) -> list[dg.AssetsDefinition]:
    sources = [s for s in stores if s.captures]
    targets = [s for s in stores if s.publishes]
    assets: list[dg.AssetsDefinition] = []
    for entity in ENTITIES:
        carrying = [s for s in sources if carried(s, entity)]
        assets += [build_capture_asset(s, entity, interval_minutes) for s in carrying]
        assets.append(build_hub_asset(entity, carrying, interval_minutes))
        assets += [build_publish_asset(s, entity, interval_minutes) for s in targets if carried(s, entity)]
    host = sync_log_host()
    if host is not None and host in stores:
        assets.append(build_sync_log_asset(
            host, [publish_key(s.key, e) for s in targets for e in ENTITIES if carried(s, e)], interval_minutes))
    return assets
