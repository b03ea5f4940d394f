"""The code location's resources, configured from the environment. `definitions.py` serves them to Dagster;
commands run outside Dagster (install, plan, webhooks) open them from here, without building every asset,
check and sensor (the webhook receiver starts in a fraction of the time)."""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import dagster as dg

from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.defs.resources import (
    HubResource,
    LocalDbResource,
    StoreResource,
    SupabaseResource,
    SyncSettingsResource,
    TwentyResource,
)
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

RESOURCES: dict[str, Any] = {
    "hub": HubResource(dsn=dg.EnvVar("SYNC_HUB_DATABASE_URL")),
    "sync_settings": SyncSettingsResource(),
    **STORE_RESOURCES,
}


@contextmanager
def open_resources(*keys: str) -> Iterator[list[Any]]:
    """Resources for commands run outside Dagster (install, plan, webhooks), configured from the environment
    as Dagster configures them, and torn down on exit."""
    with ExitStack() as stack:
        yield [stack.enter_context(RESOURCES[key].process_config_and_initialize_cm()) for key in keys]
