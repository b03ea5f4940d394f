"""The code location: every asset, check, job, sensor, schedule and resource of sync_pipeline."""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import dagster as dg

from sync_pipeline.defs.assets import build_assets
from sync_pipeline.defs.automation import JOBS, SCHEDULES, SENSORS
from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.defs.checks import build_checks, preflight
from sync_pipeline.defs.jobs import safety_checks_job, sync_job, sync_plan, sync_with_safety_check
from sync_pipeline.defs.plan import sync_plan as sync_plan_asset
from sync_pipeline.defs.verdict import build_verdict_asset, safety_verdict_job
from sync_pipeline.defs.resources import (
    HubResource,
    LocalDbResource,
    StoreResource,
    SupabaseResource,
    SyncSettingsResource,
    TwentyResource,
)
from sync_pipeline.settings import sync_interval_minutes
from sync_pipeline.stores.bigquery.spec import BIGQUERY
from sync_pipeline.stores.postgres import LOCAL_DB, SUPABASE
from sync_pipeline.stores.registry import STORES
from sync_pipeline.stores.twenty.spec import TWENTY


def _optional(name: str) -> dg.EnvVar | None:
    """An optional store's setting: an EnvVar when the variable is set, None (store not configured) when not."""
    return dg.EnvVar(name) if os.getenv(name) else None


def _env_or(name: str, default: str) -> dg.EnvVar | str:
    return dg.EnvVar(name) if os.getenv(name) else default


STORE_RESOURCES: dict[str, StoreResource] = {
    LOCAL_DB.key: LocalDbResource(dsn=_optional("LOCAL_DATABASE_URL")),
    SUPABASE.key: SupabaseResource(dsn=_optional("SUPABASE_DATABASE_URL"),
                                   sslmode=_env_or("SUPABASE_SSLMODE", "require")),
    TWENTY.key: TwentyResource(api_url=_optional("TWENTY_API_URL"), api_key=_optional("TWENTY_API_KEY"),
                               webhook_secret=_optional("TWENTY_WEBHOOK_SECRET"),
                               requests_per_minute=dg.EnvVar.int("TWENTY_REQUESTS_PER_MINUTE")
                               if os.getenv("TWENTY_REQUESTS_PER_MINUTE") else 100),
    BIGQUERY.key: BigQueryStoreResource(project=_optional("BIGQUERY_PROJECT"),
                                        dataset=_env_or("BIGQUERY_DATASET", "crm_sync"),
                                        location=_optional("BIGQUERY_LOCATION"),
                                        api_endpoint=_optional("BIGQUERY_EMULATOR_URL")),
}
if set(STORE_RESOURCES) != {spec.key for spec in STORES}:
    raise RuntimeError("every store of the registry needs its resource, and only those")

SYNC_ASSETS = build_assets(interval_minutes=sync_interval_minutes())
CHECKS = build_checks()

defs = dg.Definitions(
    assets=[preflight, sync_plan_asset, *SYNC_ASSETS,
            build_verdict_asset([key for asset in SYNC_ASSETS for key in asset.keys], CHECKS)],
    asset_checks=CHECKS,
    jobs=[sync_job, sync_with_safety_check, safety_checks_job, safety_verdict_job, sync_plan, *JOBS],
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={
        "hub": HubResource(dsn=dg.EnvVar("SYNC_HUB_DATABASE_URL")),
        "sync_settings": SyncSettingsResource(),
        **STORE_RESOURCES,
    },
)


@contextmanager
def open_resources(*keys: str) -> Iterator[list[Any]]:
    """Resources of the code location for commands run outside Dagster (install, webhooks), configured from
    the environment as Dagster configures them, and torn down on exit."""
    assert defs.resources is not None
    with ExitStack() as stack:
        yield [stack.enter_context(defs.resources[key].process_config_and_initialize_cm()) for key in keys]
