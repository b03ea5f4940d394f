"""The plan before writing, in the UI: the `safety/sync_plan` asset, materialized by the `sync_plan` job. It
shows what the next sync would do per store and entity, and writes nothing anywhere (`sync_pipeline.planning`).

No `from __future__ import annotations` here: Dagster inspects the context annotation at definition time.
"""

import dagster as dg

from sync_pipeline.planning import (
    ADOPTION_COLUMNS,
    CONFLICT_COLUMNS,
    FAILURE_COLUMNS,
    LINK_COLUMNS,
    QUARANTINE_COLUMNS,
    SUMMARY_COLUMNS,
    open_stores,
    plan_sync,
)
from sync_pipeline.defs.assets import md_table
from sync_pipeline.stores.registry import STORES

PLAN_KEY = dg.AssetKey(["safety", "sync_plan"])
# Detail rows shown per table: the counts above them are complete.
_DETAIL_ROWS = 50


@dg.asset(
    key=PLAN_KEY,
    group_name="safety",
    kinds={"postgres"},
    description="What the next sync would do, per store and entity: records it would insert, update and "
                "delete, conflicts and who would win, records it would quarantine and why, records it would "
                "link by natural key. Captured and resolved in a hub transaction that is rolled back: nothing "
                "is written anywhere, no cursor moves.",
    required_resource_keys={"hub", "sync_settings", *(spec.key for spec in STORES)},
    tags={"stage": "plan"},
)
def sync_plan(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    hub = context.resources.hub.hub()
    resources = {spec.key: getattr(context.resources, spec.key) for spec in STORES}
    stores, unavailable = open_stores(hub, resources)
    plan = plan_sync(hub, stores, context.resources.sync_settings.settings(), unavailable)
    if plan.confirmation_needed:
        context.log.warning(plan.confirmation_needed)
    for failure in plan.failures:
        context.log.error(f"{failure['store']} could not be planned ({failure['step']} of "
                          f"{failure['entity']}): {failure['error']}")
    return dg.MaterializeResult(metadata={
        **{f"total_{name}": n for name, n in plan.totals().items()},
        "plan": md_table(plan.summary(), SUMMARY_COLUMNS),
        "conflicts": md_table(plan.conflicts[:_DETAIL_ROWS], CONFLICT_COLUMNS),
        "quarantine": md_table(plan.quarantined[:_DETAIL_ROWS], QUARANTINE_COLUMNS, width=200),
        "links": md_table(plan.links[:_DETAIL_ROWS], LINK_COLUMNS, width=200),
        "adoption": md_table(plan.adoption_rows(), ADOPTION_COLUMNS),
        "needs_confirmation": plan.confirmation_needed or "no",
        "not_planned": md_table(plan.failures, FAILURE_COLUMNS, width=300),
    })
