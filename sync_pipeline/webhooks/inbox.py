"""The receiver's sink: every verified Twenty webhook goes to the hub inbox, as a hint unless it only echoes
the hub's own write (`webhooks.echoes`), which is kept as already applied."""

from __future__ import annotations

from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.entities import entity
from sync_pipeline.stores.twenty.store import ENTITY_BY_OBJECT_SINGULAR, STORE_NAME
from sync_pipeline.webhooks.echoes import record_if_echo
from sync_pipeline.webhooks.receiver import WebhookEvent, WebhookSink


def hub_inbox_sink(hub: Hub) -> WebhookSink:
    """Stores an event under its derived key; False for a repeated delivery. Objects we do not sync
    (notes, tasks, …) are acknowledged and dropped: they are not ours to keep."""

    def sink(event: WebhookEvent) -> bool:
        entity_name = ENTITY_BY_OBJECT_SINGULAR.get(event.object_name)
        if entity_name is None:
            return True
        echo = record_if_echo(hub, entity(entity_name), event)
        if echo is not None:
            return echo
        return hub.enqueue_webhook(STORE_NAME, entity_name, event.event_key, event.record_id, event.payload)

    return sink
