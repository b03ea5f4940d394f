"""Canonical ids <-> the stores' own ids, as the record state knows them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sync_pipeline.hub.connection import Conn, HubConnection
from sync_pipeline.model.canonical import DELETED_HASH


def record_ids(conn: Conn, store: str, entity: str, store_record_ids: Sequence[str]) -> dict[str, str]:
    """Store id -> canonical id, for the records of the store that the hub knows."""
    rows = conn.execute(
        """select store_record_id, record_id from sync.record_state
           where store = %s and entity = %s and store_record_id = any(%b::text[])""",
        (store, entity, list(store_record_ids))).fetchall()
    return {r["store_record_id"]: str(r["record_id"]) for r in rows}


# Read from the index of the records held under an id of their own alone (migration 12).
STORE_IDS = """select record_id, store_record_id from sync.record_state
               where store = %s and entity = %s and record_id = any(%b::uuid[])
                 and store_record_id <> record_id::text"""


def store_ids(conn: Conn, store: str, entity: str, canonical_ids: Sequence[str]) -> dict[str, str]:
    """Canonical id -> the store's id, where the store knows the record under an id of its own (a record it
    holds under its canonical id is left out: the caller reads it as the same id)."""
    rows = conn.execute(STORE_IDS, (store, entity, list(canonical_ids))).fetchall()
    return {str(r["record_id"]): r["store_record_id"] for r in rows}


class IdMaps(HubConnection):
    """The id map of each store, one query per batch of records."""

    def record_ids_for(self, store: str, entity: str, store_record_ids: Sequence[str]) -> dict[str, str]:
        """Store id -> canonical id, for the records of an id-mapping store that the hub knows."""
        with self.connect() as conn:
            return record_ids(conn, store, entity, store_record_ids)

    def store_ids_for(self, store: str, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        """Canonical id -> the store's id, where the store knows the record under another id."""
        with self.connect() as conn:
            return store_ids(conn, store, entity, record_ids)

    def id_map(self, store: str) -> HubIdMap:
        return HubIdMap(self, store)


class HubIdMap:
    """Canonical ids <-> one store's own ids, as the hub's record state knows them. Usually the same id:
    records we create in a store carry their canonical id. They differ where a store's record was linked
    to one the hub already had under another id (same e-mail or domain)."""

    def __init__(self, hub: IdMaps, store: str) -> None:
        self._hub = hub
        self._store = store

    def to_store(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        return self._hub.store_ids_for(self._store, entity, record_ids)

    def to_canonical(self, entity: str, store_ids: Sequence[str]) -> dict[str, str]:
        return self._hub.record_ids_for(self._store, entity, store_ids)

    def holding(self, entity: str, record_ids: Sequence[str]) -> dict[str, str]:
        with self._hub.connect() as conn:
            rows = conn.execute(
                """select record_id, store_record_id from sync.record_state
                   where store = %s and entity = %s and record_id = any(%b::uuid[])
                     and store_record_id is not null""", (self._store, entity, list(record_ids))).fetchall()
            return {str(r["record_id"]): r["store_record_id"] for r in rows}

    def live(self, entity: str, record_ids: Sequence[str]) -> set[str]:
        """The records among these that the hub has not deleted: held alive, or never seen (a reference to
        a record no store has yet is kept, not erased: it may still arrive)."""
        with self._hub.connect() as conn:
            rows = conn.execute("""select record_id from sync.golden where entity = %s and deleted
                                   and record_id = any(%b::uuid[])""", (entity, list(record_ids)))
            return set(record_ids) - {str(r["record_id"]) for r in rows}

    def last_read(self, entity: str, record_ids: Sequence[str]) -> dict[str, tuple[str | None, datetime | None]]:
        """Record id -> (content hash the store holds as far as the hub knows, newest modification time
        captured from the store): what a write would overwrite unread is an edit past both."""
        with self._hub.connect() as conn:
            rows = conn.execute(
                """select s.record_id, s.seen_hash,
                          (select max(i.modified_at) from sync.inbox i
                            where i.store = s.store and i.entity = s.entity and i.kind = 'change'
                              and i.store_record_id = coalesce(s.store_record_id, s.record_id::text)) as read_at
                   from sync.record_state s
                   where s.store = %s and s.entity = %s and s.record_id = any(%b::uuid[])""",
                (self._store, entity, list(record_ids))).fetchall()
            return {str(r["record_id"]): (r["seen_hash"], r["read_at"]) for r in rows}

    def held(self, entity: str) -> dict[str, str]:
        """Store id -> canonical id of the records the store holds alive as far as the hub knows, but for
        those with a change or hint of the store waiting in the inbox (what a listing of the store must
        show)."""
        with self._hub.connect() as conn:
            rows = conn.execute(
                """select coalesce(s.store_record_id, s.record_id::text) as store_id, s.record_id
                   from sync.record_state s
                   where s.store = %s and s.entity = %s and s.seen_version > 0 and s.seen_hash <> %s
                     and not exists (
                       select from sync.inbox i
                       where i.store = s.store and i.entity = s.entity and i.applied_at is null
                         and i.store_record_id = coalesce(s.store_record_id, s.record_id::text))""",
                (self._store, entity, DELETED_HASH)).fetchall()
            return {r["store_id"]: str(r["record_id"]) for r in rows}

    def read_as_gone(self, entity: str, store_ids: Sequence[str]) -> set[str]:
        """Those of the store's ids whose newest change captured from the store is a delete."""
        with self._hub.connect() as conn:
            rows = conn.execute(
                """select distinct on (store_record_id) store_record_id, op from sync.inbox
                   where store = %s and entity = %s and kind = 'change' and store_record_id = any(%b::text[])
                   order by store_record_id, modified_at desc, id desc""",
                (self._store, entity, list(store_ids))).fetchall()
            return {r["store_record_id"] for r in rows if r["op"] == "delete"}
