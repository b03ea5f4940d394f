"""Echoes: every publish to Twenty comes back as Twenty webhooks showing our own write. Kept as hints, each
would wake a run that only finds the record unchanged, and hold the run slot while real changes wait.

A webhook is an echo when its record, read as the capture reads a Twenty record and laid over the golden data
(Twenty carries only some fields, as the resolver lays a change over them), has the content hash the hub knows
Twenty to hold, and that is the golden record's current content: the resolver would find it an echo too
(`engine.policy.is_echo`). Anything in doubt stays a hint: a record the hub does not know, a delete, a payload
without a field we map, a value the contract refuses, another content.

Twenty sends the webhooks of a write as soon as it commits, often before the publish has recorded that Twenty
holds the version. A webhook showing the golden content while that publish is outstanding is checked again a
few times, briefly (Twenty waits 5 s for an answer, §9.4), before it is kept as a hint."""

from __future__ import annotations

import time
from typing import Any

from sync_pipeline.config import active_config
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.canonical import content_hash
from sync_pipeline.model.entities import Entity
from sync_pipeline.pipeline import to_captured
from sync_pipeline.stores.base import IdMap
from sync_pipeline.stores.twenty.store import STORE_NAME, raw_changes
from sync_pipeline.webhooks.receiver import WebhookEvent

# Pauses before checking again whether an outstanding publish has been recorded (1.55 s in all).
PUBLISH_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)
_MISSING = object()


def _holds(record: dict[str, Any], path: str) -> bool:
    """Whether the record has the field a dotted mapping path names (`jobTitle`, `emails.primaryEmail`)."""
    top, _, sub = path.partition(".")
    value = record.get(top, _MISSING)
    return value is not _MISSING and (not sub or (isinstance(value, dict) and sub in value))


def echoed_hash(entity: Entity, record: Any, golden_data: dict[str, Any], id_map: IdMap) -> str | None:
    """The content hash the resolver would give a live Twenty record laid over the golden data; None when in
    doubt (not a live record with every mapped field, or not one the capture would take in as it is)."""
    spec = active_config().twenty_mapping(entity.name)
    if (spec is None or not isinstance(record, dict) or not isinstance(record.get("id"), str)
            or "deletedAt" not in record or record["deletedAt"] is not None
            or not all(_holds(record, path) for path in spec.fields.values())):
        return None
    [raw] = raw_changes(entity, id_map, [record])
    if raw.error:
        return None
    changes, quarantined = to_captured(entity, [raw], {})
    if quarantined or len(changes) != 1 or changes[0].data is None:
        return None
    return content_hash({**golden_data, **changes[0].data})


def record_if_echo(hub: Hub, entity: Entity, event: WebhookEvent) -> bool | None:
    """Keep the event as an applied echo if it is one: True when stored, False for a repeated delivery; None
    when it is not (or not surely) an echo, storing nothing."""
    if event.op != "upsert":
        return None
    held = hub.held_record(STORE_NAME, entity.name, event.record_id)
    if held is None:
        return None
    digest = echoed_hash(entity, event.payload.get("record"), held.data, hub.id_map(STORE_NAME))
    if digest != held.content_hash:
        return None
    for pause in (0.0, *(PUBLISH_WAITS if held.publish_outstanding else ())):
        time.sleep(pause)
        stored = hub.record_echo(STORE_NAME, entity.name, event.event_key, event.record_id, digest, event.payload)
        if stored is not None:
            return stored
    return None
