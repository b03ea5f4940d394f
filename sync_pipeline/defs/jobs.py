"""Jobs. Steps run in one process: a sync is a short chain of I/O-bound steps, and a subprocess per step
costs more than the work on a small machine."""

from __future__ import annotations

import dagster as dg

from sync_pipeline.defs.assets import PREFLIGHT_KEY
from sync_pipeline.defs.plan import PLAN_KEY
from sync_pipeline.defs.verdict import VERDICT_KEY

# What launched a run: sensors and schedules set their own value, a run launched by a person keeps this.
MANUAL = {"sync/trigger": "manual"}
# A sync whose worker died is failed (and retried) by run monitoring after this long, instead of holding the
# queue's one slot for the instance-wide hour that the nightly reconciliation may need.
SYNC_TAGS = {**MANUAL, "dagster/max_runtime": "900"}
# Every asset of the sync with the monitoring checks beside it, so each check describes the sync it ran
# with, and the verdict last. The plan is no part of a sync.
_SYNC_ASSETS = dg.AssetSelection.all() - dg.AssetSelection.assets(PREFLIGHT_KEY, PLAN_KEY)

sync_job = dg.define_asset_job(
    "sync_job",
    selection=_SYNC_ASSETS,
    description="Capture every source, resolve in the hub, publish to every target; the monitoring checks "
                "run beside each asset and the safety verdict comes last.",
    executor_def=dg.in_process_executor,
    tags=SYNC_TAGS,
)

sync_with_safety_check = dg.define_asset_job(
    "sync_with_safety_check",
    selection=_SYNC_ASSETS | dg.AssetSelection.assets(PREFLIGHT_KEY),
    description="The sync behind its gate: the blocking safety checks run first, and a failure stops the "
                "sync before anything is written.",
    executor_def=dg.in_process_executor,
    tags=SYNC_TAGS,
)

safety_checks_job = dg.define_asset_job(
    "safety_checks_job",
    selection=dg.AssetSelection.all_asset_checks() - dg.AssetSelection.checks_for_assets(VERDICT_KEY),
    description="Every safety check, nothing materialized: what the safety command and the hourly "
                "schedule run (a sensor then refreshes the verdict).",
    executor_def=dg.in_process_executor,
)

sync_plan = dg.define_asset_job(
    "sync_plan",
    selection=dg.AssetSelection.assets(PLAN_KEY),
    description="What the next sync would do, per store and entity, with nothing written anywhere (no cursor "
                "moved, no change log pruned, the hub's work rolled back).",
    executor_def=dg.in_process_executor,
    tags=MANUAL,
)
