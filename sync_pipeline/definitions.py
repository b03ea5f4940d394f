"""The code location: every asset, check, job, sensor, schedule and resource of sync_pipeline."""

from __future__ import annotations

import dagster as dg

from sync_pipeline.defs.assets import build_assets
from sync_pipeline.defs.automation import JOBS, SCHEDULES, SENSORS
from sync_pipeline.defs.checks import build_checks, preflight
from sync_pipeline.defs.jobs import safety_checks_job, sync_job, sync_plan, sync_with_safety_check
from sync_pipeline.defs.plan import sync_plan as sync_plan_asset
from sync_pipeline.defs.verdict import build_verdict_asset, safety_verdict_job
from sync_pipeline.location_resources import RESOURCES
from sync_pipeline.settings import sync_interval_minutes

SYNC_ASSETS = build_assets(interval_minutes=sync_interval_minutes())
CHECKS = build_checks()

defs = dg.Definitions(
    assets=[preflight, sync_plan_asset, *SYNC_ASSETS,
            build_verdict_asset([key for asset in SYNC_ASSETS for key in asset.keys], CHECKS)],
    asset_checks=CHECKS,
    jobs=[sync_job, sync_with_safety_check, safety_checks_job, safety_verdict_job, sync_plan, *JOBS],
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=RESOURCES,
)

