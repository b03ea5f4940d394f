"""Signed webhook delivery of §9: one POST per record per matching webhook, 5 s timeout, no retries.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .config import FaultKnobs
from .records import Change
from .schema import format_timestamp

log = logging.getLogger(__name__)
DELIVERY_TIMEOUT_SECONDS = 5.0  # §9.4


def operation_matches(operations: list[str], event_name: str) -> bool:
    """§9.1: ``person.updated``, ``*.updated``, ``person.*`` or ``*.*``."""
    singular, action = event_name.split(".", 1)
    wanted = {event_name, f"*.{action}", f"{singular}.*", "*.*"}
    return any(operation in wanted for operation in operations)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 over ``"{timestamp}:{raw body}"`` (§9.3)."""
    return hmac.new(secret.encode(), timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class WebhookStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    blocked: int = 0


class WebhookDispatcher:
    """Schedules deliveries on the running event loop so API responses are not held up."""

    def __init__(self, faults: FaultKnobs, workspace_id: str, api_key_id: str, allow_any_host: bool) -> None:
        self.faults = faults
        self.workspace_id = workspace_id
        self.api_key_id = api_key_id
        self.allow_any_host = allow_any_host
        self.stats = WebhookStats()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()

    def emit(self, webhooks: list[dict[str, Any]], changes: list[Change]) -> None:
        for change in changes:
            action = change.action
            if action == "restored" and self.faults.restored_as_deleted:
                action = "deleted"  # §9.7 PR #6905 / #17475 regression
            event_name = f"{change.obj.singular}.{action}"
            for webhook in webhooks:
                if not operation_matches(webhook.get("operations") or ["*.*"], event_name):
                    continue
                if random.random() < self.faults.webhook_drop_rate:
                    self.stats.dropped += 1
                    continue
                for _ in range(self.faults.webhook_duplicates):
                    # Built now, with the event (§9.2 eventDate); any delay comes after, on the way.
                    payload = self._payload(webhook, event_name, change)
                    task = asyncio.get_running_loop().create_task(self._deliver(webhook, payload))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    def _payload(self, webhook: dict[str, Any], event_name: str, change: Change) -> dict[str, Any]:
        """Key order of §9.2; userId / workspaceMemberId are undefined for API-key writes."""
        payload: dict[str, Any] = {
            "targetUrl": webhook["targetUrl"],
            "eventName": event_name,
            "objectMetadata": {"id": change.obj.metadata_id, "nameSingular": change.obj.singular},
            "workspaceId": self.workspace_id,
            "webhookId": webhook["id"],
            "eventDate": format_timestamp(dt.datetime.now(dt.timezone.utc)),  # built with the change
            "apiKeyId": self.api_key_id,
            "record": change.record,
        }
        if change.updated_fields is not None:
            payload["updatedFields"] = change.updated_fields
        return payload

    async def _deliver(self, webhook: dict[str, Any], payload: dict[str, Any]) -> None:
        if self.faults.webhook_delay_seconds:
            await asyncio.sleep(self.faults.webhook_delay_seconds)
        url = webhook["targetUrl"]
        if not self.allow_any_host and not is_loopback_url(url):
            self.stats.blocked += 1
            log.warning("webhook to non-loopback %s blocked", url)
            return
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()  # §9.3
        headers = {"Content-Type": "application/json"}
        secret = webhook.get("secret")
        if secret:  # §9.3: without a secret no signature headers are sent
            timestamp = str(int(time.time() * 1000))
            headers["X-Twenty-Webhook-Timestamp"] = timestamp
            headers["X-Twenty-Webhook-Signature"] = sign(secret, timestamp, body)
            headers["X-Twenty-Webhook-Nonce"] = secrets.token_hex(16)
        self.stats.sent += 1
        assert self._client is not None
        try:
            response = await self._client.post(url, content=body, headers=headers)
            if response.status_code >= 300:
                self.stats.failed += 1
        except httpx.HTTPError as error:  # §9.4: errors are only recorded, never retried
            self.stats.failed += 1
            log.info("webhook delivery to %s failed: %s", url, error)

