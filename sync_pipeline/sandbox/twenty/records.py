"""In-memory record storage with optional SQLite persistence, and the write semantics of §5.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cmp_to_key
from pathlib import Path
from typing import Any

import orjson

from .errors import DUPLICATE_ENTRY, bad_request, not_found
from .query import OrderKey, Predicate, compare_keys, sort_values
from .schema import OBJECTS, ObjectDef, coerce_input, format_timestamp, get_path, new_record

UNCHANGED_ON_UPDATE = ("updatedAt", "updatedBy")


@dataclass(frozen=True)
class Change:
    """One record-level event for webhooks (§9.1 actions)."""

    obj: ObjectDef
    action: str  # created | updated | deleted | destroyed | restored
    record: dict[str, Any]
    updated_fields: list[str] | None = None


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    total_count: int
    has_next_page: bool
    has_previous_page: bool


class RecordStore:
    """All records of one workspace; every write is applied atomically (all rows or none)."""

    def __init__(self, state_file: str | Path | None = None) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {plural: {} for plural in OBJECTS}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        self._next_position: dict[str, float] = {plural: 1 for plural in OBJECTS}
        self._last_transaction_ms = 0
        self._db: sqlite3.Connection | None = None
        if state_file is not None:
            self._open(Path(state_file))

    # --- persistence ---------------------------------------------------------------------------------

    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS records (object TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL,
                                                PRIMARY KEY (object, id));
            CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, body BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
            """
        )
        for plural, record_id, body in self._db.execute("SELECT object, id, body FROM records"):
            if plural in self.tables:
                self.tables[plural][record_id] = orjson.loads(body)
        for webhook_id, body in self._db.execute("SELECT id, body FROM webhooks"):
            self.webhooks[webhook_id] = orjson.loads(body)
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            self.meta[key] = orjson.loads(value)
        for plural, table in self.tables.items():
            positions = [row.get("position") or 0 for row in table.values()]
            self._next_position[plural] = max(positions, default=0) + 1

    def _persist(self, plural: str, rows: Iterable[dict[str, Any]], removed_ids: Iterable[str] = ()) -> None:
        if self._db is None:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO records (object, id, body) VALUES (?, ?, ?)",
                [(plural, row["id"], orjson.dumps(row)) for row in rows],
            )
            self._db.executemany(
                "DELETE FROM records WHERE object = ? AND id = ?", [(plural, rid) for rid in removed_ids]
            )

    def save_webhook(self, webhook: dict[str, Any]) -> None:
        self.webhooks[webhook["id"]] = webhook
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO webhooks (id, body) VALUES (?, ?)",
                (webhook["id"], orjson.dumps(webhook)),
            )

    def delete_webhook(self, webhook_id: str) -> None:
        self.webhooks.pop(webhook_id, None)
        if self._db is not None:
            self._db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))

    def set_meta(self, key: str, value: Any) -> None:
        self.meta[key] = value
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, orjson.dumps(value))
            )

    def clear(self) -> None:
        """Forget every record, webhook and seed marker."""
        for table in self.tables.values():
            table.clear()
        self.webhooks.clear()
        self.meta.clear()
        if self._db is not None:
            self._db.executescript("DELETE FROM records; DELETE FROM webhooks; DELETE FROM meta;")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- time ----------------------------------------------------------------------------------------

    def transaction_time(self) -> str:
        """One timestamp per write request (§10.1: CURRENT_TIMESTAMP = transaction start).

        Kept strictly increasing so that every write visibly bumps ``updatedAt``.
        """
        now_ms = max(int(time.time() * 1000), self._last_transaction_ms + 1)
        self._last_transaction_ms = now_ms
        return format_timestamp(dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc))

    # --- reads ---------------------------------------------------------------------------------------

    def get(self, obj: ObjectDef, record_id: str, with_deleted: bool = False) -> dict[str, Any] | None:
        row = self.tables[obj.plural].get(record_id)
        if row is None or (row["deletedAt"] is not None and not with_deleted):
            return None
        return row

    def select(self, obj: ObjectDef, predicate: Predicate | None, with_deleted: bool) -> list[dict[str, Any]]:
        """Rows matching the filter and the deleted-row rule of §4.4."""
        return [
            row
            for row in self.tables[obj.plural].values()
            if (with_deleted or row["deletedAt"] is None) and (predicate is None or predicate(row) is True)
        ]

    def page(
        self,
        obj: ObjectDef,
        predicate: Predicate | None,
        with_deleted: bool,
        order: list[OrderKey],
        limit: int,
        after: tuple[Any, ...] | None = None,
        before: tuple[Any, ...] | None = None,
    ) -> Page:
        """Keyset page (§4.2): ``totalCount`` ignores cursor and limit."""
        rows = self.select(obj, predicate, with_deleted)
        Keyed = tuple[tuple[Any, ...], dict[str, Any]]

        def by_keys(left: Keyed, right: Keyed) -> int:
            return compare_keys(left[0], right[0], order)

        keyed = sorted(((sort_values(row, order), row) for row in rows), key=cmp_to_key(by_keys))
        if after is not None:
            candidates = [row for keys, row in keyed if compare_keys(keys, after, order) > 0]
            return Page(candidates[:limit], len(rows), len(candidates) > limit, True)
        if before is not None:
            candidates = [row for keys, row in keyed if compare_keys(keys, before, order) < 0]
            page = candidates[len(candidates) - limit :] if limit else []
            return Page(page, len(rows), True, len(candidates) > limit)
        ordered = [row for _, row in keyed]
        return Page(ordered[:limit], len(rows), len(ordered) > limit, False)

    # --- integrity -----------------------------------------------------------------------------------

    def _check_integrity(self, obj: ObjectDef, staged: dict[str, dict[str, Any]]) -> None:
        """Foreign keys of staged rows, then unique values among live rows (§7.5)."""
        for row in staged.values():
            for definition in obj.fields.values():
                value = row.get(definition.name)
                if definition.target and value is not None and value not in self.tables[definition.target]:
                    raise bad_request(
                        f'insert or update on table "{obj.singular}" violates foreign key constraint '
                        f'on "{definition.name}": {value} does not exist'
                    )
        for path in obj.unique_paths:
            owners: dict[Any, str] = {}
            table = self.tables[obj.plural]
            for row in [*(r for rid, r in table.items() if rid not in staged), *staged.values()]:
                value = get_path(row, path)
                if value is None or row["deletedAt"] is not None:
                    continue
                if value in owners and owners[value] != row["id"]:
                    raise bad_request(DUPLICATE_ENTRY)
                owners[value] = row["id"]

    def _resolve_relation(self, target: str, where: dict[str, Any]) -> str:
        """``connect.where`` by id or by a unique field of the target object."""
        target_obj = OBJECTS[target]
        values = coerce_input(target_obj, where, None, self._resolve_relation)
        paths = [path for path in ("id", *target_obj.unique_paths) if get_path(values, path) is not None]
        for row in self.tables[target].values():
            if paths and all(get_path(row, path) == get_path(values, path) for path in paths):
                return row["id"]
        raise bad_request(f"Expected 1 record to connect to {target_obj.singular}, but found 0.")

    # --- writes --------------------------------------------------------------------------------------

    def _commit(self, obj: ObjectDef, staged: dict[str, dict[str, Any]]) -> None:
        self.tables[obj.plural].update(staged)
        self._persist(obj.plural, staged.values())

    def _matching_ids(self, obj: ObjectDef, values: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Upsert conflict groups (§5.3): ids of existing rows (soft-deleted included) and group labels."""
        matched: list[str] = []
        labels: list[str] = []
        for path in ("id", *obj.unique_paths):
            wanted = get_path(values, path)
            if wanted is None:
                continue
            labels.append(f"{path.split('.')[0]} ({path}: {wanted})")
            for row in self.tables[obj.plural].values():
                if get_path(row, path) == wanted and row["id"] not in matched:
                    matched.append(row["id"])
        return matched, labels

    def _insert_row(
        self, obj: ObjectDef, values: dict[str, Any], actor: dict[str, Any], now: str
    ) -> dict[str, Any]:
        row = new_record(obj)
        row.update(values)
        row["id"] = values.get("id") or str(uuid.uuid4())
        if "position" not in values:
            row["position"] = self._next_position[obj.plural]
            self._next_position[obj.plural] += 1
        client_actor = values.get("createdBy") or {}
        # §5.1: createdBy is filled from the caller if absent or without name; a sent source is kept.
        if client_actor.get("name"):
            row["createdBy"] = client_actor
        else:
            row["createdBy"] = {**actor, "source": client_actor.get("source") or actor["source"]}
        row["updatedBy"] = dict(actor)
        row["createdAt"] = values.get("createdAt") or now
        # A caller-set updatedAt suppresses the automatic value (§10.2).
        row["updatedAt"] = values.get("updatedAt") or now
        return row

    def _updated_row(
        self, current: dict[str, Any], values: dict[str, Any], actor: dict[str, Any], now: str
    ) -> dict[str, Any]:
        row = {**current, **values}
        row["id"] = current["id"]
        row["createdBy"] = values.get("createdBy") or current["createdBy"]
        row["updatedBy"] = dict(actor)
        row["updatedAt"] = values.get("updatedAt") or now
        return row

    @staticmethod
    def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
        return [key for key in after if key not in UNCHANGED_ON_UPDATE and before.get(key) != after[key]]

    def create_many(
        self, obj: ObjectDef, items: list[Any], *, upsert: bool, actor: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Change]]:
        """Create (or with ``upsert`` create-or-update) records; results come back in input order."""
        now = self.transaction_time()
        table = self.tables[obj.plural]
        staged: dict[str, dict[str, Any]] = {}
        results: list[dict[str, Any]] = []
        changes: list[Change] = []
        for item in items:
            values = coerce_input(obj, item, None, self._resolve_relation)
            matched, labels = self._matching_ids(obj, values) if upsert else ([], [])
            if len(matched) > 1:
                raise bad_request(
                    f"Multiple records found with the same unique field values for {'; '.join(labels)}. "
                    "Cannot determine which record to update."
                )
            if matched:
                current = staged.get(matched[0]) or table[matched[0]]
                values = coerce_input(obj, item, current, self._resolve_relation)
                row = self._updated_row(current, values, actor, now)
                row["deletedAt"] = None  # §5.3 step 3: an upsert revives a soft-deleted record
                changes.append(Change(obj, "updated", row, self._changed_fields(current, row)))
            else:
                row = self._insert_row(obj, values, actor, now)
                if row["id"] in table or row["id"] in staged:
                    raise bad_request(DUPLICATE_ENTRY)
                changes.append(Change(obj, "created", row))
            staged[row["id"]] = row
            results.append(row)
        self._check_integrity(obj, staged)
        self._commit(obj, staged)
        return results, changes

    def update_many(
        self, obj: ObjectDef, rows: list[dict[str, Any]], data: Any, actor: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Change]]:
        """Apply one partial update to the given rows (§5.4); every row gets the same updatedAt."""
        now = self.transaction_time()
        staged: dict[str, dict[str, Any]] = {}
        changes: list[Change] = []
        for current in rows:
            values = coerce_input(obj, data, current, self._resolve_relation)
            if values.get("id", current["id"]) != current["id"]:
                raise bad_request("The id of a record cannot be changed.")
            row = self._updated_row(current, values, actor, now)
            staged[row["id"]] = row
            changes.append(Change(obj, "updated", row, self._changed_fields(current, row)))
        self._check_integrity(obj, staged)
        self._commit(obj, staged)
        return list(staged.values()), changes

    def soft_delete(
        self, obj: ObjectDef, rows: list[dict[str, Any]], actor: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Change]]:
        """Set ``deletedAt``; soft delete also bumps ``updatedAt`` (§5.5)."""
        now = self.transaction_time()
        staged = {
            row["id"]: {**row, "deletedAt": now, "updatedAt": now, "updatedBy": dict(actor)} for row in rows
        }
        self._commit(obj, staged)
        return list(staged.values()), [Change(obj, "deleted", row) for row in staged.values()]

    def restore(
        self, obj: ObjectDef, rows: list[dict[str, Any]], actor: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Change]]:
        now = self.transaction_time()
        staged = {
            row["id"]: {**row, "deletedAt": None, "updatedAt": now, "updatedBy": dict(actor)} for row in rows
        }
        self._check_integrity(obj, staged)  # the restored row becomes live: its unique values must be free
        self._commit(obj, staged)
        return list(staged.values()), [Change(obj, "restored", row) for row in staged.values()]

    def destroy(self, obj: ObjectDef, rows: list[dict[str, Any]]) -> list[Change]:
        """Hard delete; join columns pointing here become null (ON DELETE SET NULL, §5.5), silently."""
        removed = {row["id"] for row in rows}
        for other in OBJECTS.values():
            for definition in other.fields.values():
                if definition.target != obj.plural:
                    continue
                referencing = {
                    rid: {**row, definition.name: None}
                    for rid, row in self.tables[other.plural].items()
                    if row.get(definition.name) in removed
                }
                if referencing:
                    self._commit(other, referencing)
        for record_id in removed:
            self.tables[obj.plural].pop(record_id, None)
        self._persist(obj.plural, (), removed)
        return [Change(obj, "destroyed", row) for row in rows]

    def find_for_write(self, obj: ObjectDef, record_id: str, with_deleted: bool) -> dict[str, Any]:
        row = self.get(obj, record_id, with_deleted=with_deleted)
        if row is None:
            raise not_found()
        return row

    def insert_seed_rows(self, obj: ObjectDef, rows: list[dict[str, Any]]) -> int:
        """Add seed rows whose id is not present yet; returns how many were added."""
        table = self.tables[obj.plural]
        fresh = {row["id"]: row for row in rows if row["id"] not in table}
        self._commit(obj, fresh)
        positions = [row.get("position") or 0 for row in table.values()]
        self._next_position[obj.plural] = max(positions, default=0) + 1
        return len(fresh)
