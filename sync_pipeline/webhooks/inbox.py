"""The receiver's sink: every verified Twenty webhook goes to the hub inbox as a hint."""

from __future__ import annotations

from sync_pipeline.hub.hub import Hub
from sync_pipeline.stores.twenty.store import ENTITY_BY_OBJECT_SINGULAR, STORE_NAME
from sync_pipeline.webhooks.receiver import WebhookEvent, WebhookSink


def hub_inbox_sink(hub: Hub) -> WebhookSink:
    """Stores an event under its derived key; False for a repeated delivery. Objects we do not sync
    (notes, tasks, …) are acknowledged and dropped: they are not ours to keep."""

    def sink(event: WebhookEvent) -> bool:
        entity = ENTITY_BY_OBJECT_SINGULAR.get(event.object_name)
        if entity is None:
            return True
        return hub.enqueue_webhook(STORE_NAME, entity, event.event_key, event.record_id, event.payload)

    return sink
