"""`sync-pipeline install`, also run by the sandbox: migrate the hub, then prepare every configured store
that needs it (change capture in the Postgres stores, the warehouse's dataset and tables). Idempotent.

`--print-sql` runs nothing: it prints the statements install would run in each Postgres store now (read
from the store's catalog in a read-only transaction), and says what it would do elsewhere."""

from __future__ import annotations

from typing import Callable

from sync_pipeline.stores.base import Installable
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.registry import STORES


def install(say: Callable[[str], None] = print, print_sql: bool = False) -> None:
    from sync_pipeline.location_resources import open_resources

    installable = [spec for spec in STORES if spec.can(Installable)]
    with open_resources("hub", *(spec.key for spec in installable)) as (hub_resource, *resources):
        hub = hub_resource.hub()
        if print_sql:
            say("-- hub: the pending migrations of the sync schema (sync_pipeline/hub/migrations.py)")
        else:
            hub.migrate()
            say("hub: the sync schema is up to date")
        for spec, resource in zip(installable, resources):
            prefix = "-- " if print_sql else ""
            if not resource.configured:
                say(f"{prefix}{spec.key}: not configured, skipped")
                continue
            store = resource.store(hub)
            if not print_sql:
                store.install()
                say(f"{spec.key}: installed in {spec.label}")
            elif isinstance(store, PostgresStore):
                say(f"-- {spec.key}: {spec.label}, in one transaction")
                for statement in store.install_sql():
                    say(f"{statement.strip()};")
            else:
                say(f"-- {spec.key}: creates what is missing of {spec.label}'s dataset and tables "
                    "(API calls, no SQL)")
