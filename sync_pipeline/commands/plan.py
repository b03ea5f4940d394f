"""`sync-pipeline plan`: the plan of the next sync (`sync_pipeline.planning`) for the stores the environment
configures, printed."""

from __future__ import annotations

from collections.abc import Callable

from sync_pipeline.planning import open_stores, plan_sync, print_plan


def run_plan(say: Callable[[str], None] = print) -> int:
    """The command: plan against the stores the environment configures; 1 when one could not be planned."""
    from sync_pipeline.location_resources import open_resources
    from sync_pipeline.stores.registry import STORES

    keys = [spec.key for spec in STORES]
    with open_resources("hub", "sync_settings", *keys) as (hub_resource, settings_resource, *store_resources):
        hub = hub_resource.hub()
        stores, unavailable = open_stores(hub, dict(zip(keys, store_resources)))
        plan = plan_sync(hub, stores, settings_resource.settings(), unavailable)
    print_plan(plan, say)
    return 1 if plan.failures else 0
