"""`sync-pipeline install`, also run by the sandbox: migrate the hub, then prepare every configured store
that needs it (change capture in the Postgres stores, the warehouse's dataset and tables). Idempotent."""

from __future__ import annotations

from typing import Callable

from sync_pipeline.stores.base import Installable
from sync_pipeline.stores.registry import STORES


def install(say: Callable[[str], None] = print) -> None:
    from sync_pipeline.definitions import open_resources

    installable = [spec for spec in STORES if spec.can(Installable)]
    with open_resources("hub", *(spec.key for spec in installable)) as (hub_resource, *resources):
        hub = hub_resource.hub()
        hub.migrate()
        say("hub: the sync schema is up to date")
        for spec, resource in zip(installable, resources):
            if not resource.configured:
                say(f"{spec.key}: not configured, skipped")
                continue
            resource.store(hub).install()
            say(f"{spec.key}: installed in {spec.label}")
