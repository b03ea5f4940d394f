"""Webhooks that only echo the hub's own writes: what the hub holds of a store's record, found by the store's id,
and such a webhook kept as an inbox row already applied, so that no run is started for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from sync_pipeline.hub.connection import HubConnection, as_uuid
from sync_pipeline.hub.runs import RecordOutcome, record_outcomes


@dataclass(frozen=True)
class HeldRecord:
    """A live golden record, and what the hub knows one store to hold of it."""

    record_id: str
    version: int
    content_hash: str
    data: dict[str, Any]
    seen_version: int  # the version the store is known to hold
    seen_hash: str | None

    @property
    def publish_outstanding(self) -> bool:
        """Whether the store has not been recorded holding the current version (a publish may be under way)."""
        return self.seen_version < self.version


class Echoes(HubConnection):
    """Echoes of the hub's own writes, recognised when they arrive."""

    def held_record(self, store: str, entity: str, store_record_id: str) -> HeldRecord | None:
        """The live golden record the store holds under its own id `store_record_id`, or that it is being sent
        under it: a record new to the store is created there under its canonical id, and its webhook may come
        before the publish has recorded it. None when the hub knows no such record (or holds it deleted)."""
        with self.connect() as conn:
            row = conn.execute(
                """select g.record_id, g.version, g.content_hash, g.data, s.seen_version, s.seen_hash
                   from sync.record_state s
                   join sync.golden g on g.entity = s.entity and g.record_id = s.record_id
                   where s.store = %(store)s and s.entity = %(entity)s and s.store_record_id = %(id)s
                     and not g.deleted
                   union all
                   select g.record_id, g.version, g.content_hash, g.data, coalesce(s.seen_version, 0), s.seen_hash
                   from sync.golden g
                   left join sync.record_state s
                     on s.entity = g.entity and s.record_id = g.record_id and s.store = %(store)s
                   where g.entity = %(entity)s and g.record_id = %(uuid)s and not g.deleted
                     and s.store_record_id is null
                   limit 1""",
                {"store": store, "entity": entity, "id": store_record_id,
                 "uuid": as_uuid(store_record_id)}).fetchone()
            if row is None or row["data"] is None:
                return None
            return HeldRecord(str(row["record_id"]), row["version"], row["content_hash"], row["data"],
                              row["seen_version"], row["seen_hash"])

    def record_echo(self, store: str, entity: str, event_key: str, store_record_id: str, digest: str,
                    payload: dict[str, Any]) -> bool | None:
        """Keep a webhook as applied when its record's content `digest` is both what the hub knows the store to
        hold and the golden record's current content: True when stored (outcome 'echo' at capture), False for
        a repeated delivery (outcome 'duplicate', as for any hint). None, storing nothing, when the hub does not
        know the store to hold that content now."""
        with self.connect() as conn, conn.transaction():
            held = conn.execute(
                """select s.record_id, g.version from sync.record_state s
                   join sync.golden g on g.entity = s.entity and g.record_id = s.record_id
                   where s.store = %s and s.entity = %s and s.store_record_id = %s
                     and s.seen_hash = %s and g.content_hash = %s""",
                (store, entity, store_record_id, digest, digest)).fetchone()
            if held is None:
                return None
            stored = conn.execute(
                """insert into sync.inbox (store, entity, event_key, kind, record_id, store_record_id, payload,
                                          applied_at)
                   values (%s, %s, %s, 'webhook', %s, %s, %s, now()) on conflict (store, event_key) do nothing""",
                (store, entity, event_key, held["record_id"], store_record_id, Jsonb(payload))).rowcount == 1
            record_outcomes(conn, [RecordOutcome(None, store, entity, str(held["record_id"]), "capture",
                                                 "echo" if stored else "duplicate", event_key, held["version"])])
            return stored
