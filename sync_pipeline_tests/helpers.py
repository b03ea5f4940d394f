"""Small helpers shared by the tests: run a whole sync, read a store's rows."""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from sync_pipeline import pipeline
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.entities import ENTITIES, Entity, entity
from sync_pipeline.settings import SyncSettings
from sync_pipeline.stores.base import Store

SETTINGS = SyncSettings()


def sync_once(hub: Hub, stores: Sequence[Store], settings: SyncSettings = SETTINGS,
              entities: Sequence[Entity] = ENTITIES) -> dict[str, Any]:
    """One run of the job: capture every store, resolve, publish to every store; returns the stats. A test
    whose records are all of some entities may run only those (the others' steps have nothing to do)."""
    stats: dict[str, Any] = {}
    for e in entities:
        for s in stores:
            stats[("capture", s.name, e.name)] = pipeline.capture(hub, s, e, "test-run", settings)
        stats[("resolve", e.name)] = pipeline.resolve(hub, e, "test-run", settings)
        for s in stores:
            stats[("publish", s.name, e.name)] = pipeline.publish(hub, s, e, "test-run", settings)
    return stats


def people(store) -> list[dict[str, Any]]:
    return store.rows(entity("people"))


def insert_person(conn, **values: Any) -> str:
    row = {"id": str(uuid.uuid4()), "first_name": "Ada", "last_name": "Lovelace",
           "email": f"{uuid.uuid4().hex[:8]}@example.com", **values}
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    conn.execute(f"insert into public.people ({cols}) values ({marks})", list(row.values()))
    return row["id"]
