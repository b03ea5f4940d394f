"""A Postgres store's apply: golden records into a mapped table, set-based and version-guarded.

Ids go through the hub's id map: a record the store holds already is written under its store id; a new one
gets its canonical id in a uuid table, the canonical id's text in a text table, and in a bigint identity
table the next values of the identity's sequence, fetched in one statement for the batch and written with
`overriding system value`; the hub learns them from `ApplyResult.store_ids`.

A batch of new rows goes straight into the table by binary COPY (under a savepoint), with its row versions
into the table's row versions in `sync_cdc`; otherwise into a temp stage, then the guarded update and insert of
`writes.upsert_staged`; tombstones delete only rows older than themselves. Never a per-row loop.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Callable, Iterator

import psycopg
from psycopg.rows import DictRow

from sync_pipeline.engine.records import ApplyResult, GoldenRecord
from sync_pipeline.model.canonical import python_value
from sync_pipeline.model.entities import FieldType
from sync_pipeline.stores.base import IdMap, live_data, translate_references
from sync_pipeline.stores.limits import refusals
from sync_pipeline.stores.postgres.catalog import LiveTable
from sync_pipeline.stores.postgres.ddl import WRITER_SETTING
from sync_pipeline.stores.postgres.limits import LIMITS
from sync_pipeline.stores.postgres.tables import MappedTable
from sync_pipeline.stores.postgres.writes import (
    allocate_ids,
    any_exists,
    copy_direct,
    delete_older,
    locked_rows,
    upsert_staged,
    uuid_bytes,
)

# Ids probed to tell a batch of new rows (COPY straight in) from one with updates (guarded upsert).
_NEW_ROWS_SAMPLE = 1_000
# Memory for the hash joins of one batch against its stage (the server's default, 4 MB, spills to disk).
_WORK_MEM = "64MB"
# Writes of a batch tried after a lock timeout, each without the rows found locked.
_LOCK_ATTEMPTS = 3


class RowLocked(Exception):
    """An application held the row locked longer than the lock timeout; the next run writes it."""


class UnresolvedReference(Exception):
    """A reference to a record the store does not hold yet, in a column that cannot hold a canonical id
    (a bigint or text id): the record is written once the referenced one is there (retried next run)."""


Connect = Callable[[], AbstractContextManager[psycopg.Connection[DictRow]]]


def apply_batch(connect: Connect, id_map: IdMap, table: MappedTable,
                live: Callable[[psycopg.Connection[DictRow]], LiveTable], records: list[GoldenRecord],
                lock_timeout_ms: str) -> ApplyResult:
    """Write golden records: upserts through COPY + the guarded upsert, tombstones as guarded deletes.
    `live` reads the table from the catalog (and refuses a drifted one) in the write's transaction."""
    result = ApplyResult()
    name = table.entity.name
    row_ids = {g.record_id: g.record_id for g in records}
    row_ids.update(id_map.to_store(name, list(row_ids)))
    unknown = set() if table.mapping.id_type != "bigint" else {
        g.record_id for g in records if row_ids[g.record_id] == g.record_id}
    refused: dict[str, BaseException] = dict(refusals(LIMITS, table.entity, records))  # fail alone, unsent
    writable = [g for g in records if not g.deleted and g.record_id not in refused]
    references = _references(table, id_map, writable)
    refused.update(_unresolved(table, references, writable))
    upserts = [g for g in writable if g.record_id not in refused]
    # A tombstone of a record a bigint table never received has no row to delete.
    deletes = [g for g in records if g.deleted and g.record_id not in unknown]
    stale_rows: set[str] = set()
    deleted_rows: list[str] = []
    locked: set[str] = set()  # rows an application holds locked: left for the next run
    with connect() as conn, conn.transaction():
        # Transaction-scoped, as a transaction pooler needs: our writes are not captured, and the stage's
        # joins hash in memory instead of sorting on disk.
        conn.execute("select set_config(%s, 'sync', true), set_config('work_mem', %s, true)",
                     (WRITER_SETTING, _WORK_MEM))
        columns = live(conn)
        new_records = unknown & {g.record_id for g in upserts}
        new_ids = iter(allocate_ids(conn, table, len(new_records)) if new_records else [])
        # One row per id, the highest version: ON CONFLICT may touch a row only once per statement, and
        # deduplicating here spares the database a DISTINCT ON sort of the whole stage.
        latest: dict[str, GoldenRecord] = {}
        for g in upserts:
            if g.record_id in new_records and row_ids[g.record_id] == g.record_id:
                row_ids[g.record_id] = next(new_ids)
            kept = latest.get(row_ids[g.record_id])
            if kept is None or g.version > kept.version:
                latest[row_ids[g.record_id]] = g
        stage_types = [table.id_type, *(table.field_types[f] for f in table.fields), "int8", "timestamptz"]
        rows = partial(_stage_rows, table, references, latest, locked)

        copied_directly = False
        # COPY writes the table's own types only, and no id into a `generated always` identity.
        app_columns = [table.mapping.id_column, *table.columns]
        direct = columns.columns[table.mapping.id_column].identity != "a" and all(
            columns.columns[c].type == t for c, t in zip(app_columns, stage_types))
        if direct and latest and not any_exists(conn, table, list(latest)[:_NEW_ROWS_SAMPLE]):
            # The batch looks new (an initial load, a batch of new records): COPY straight into the
            # table, inside a savepoint. Should any row exist after all (beyond the sample, or written
            # meanwhile), the unique index refuses the COPY and the guarded upsert takes the batch.
            try:
                with conn.transaction(), conn.cursor() as cur:
                    # The rows' version entries are taken as their rows go, each with its row's key.
                    versions: list[tuple[Any, int, Any]] = []
                    copy_direct(cur, table, stage_types[:-2], partial(rows, versions=versions), versions)
                copied_directly = True
            except (psycopg.errors.UniqueViolation, psycopg.errors.LockNotAvailable):
                pass
        # A statement that waits past the lock timeout fails its savepoint; the rows an application
        # holds are then found (the others locked by us meanwhile) and the batch written without them.
        for attempt in range(1, _LOCK_ATTEMPTS + 1):
            try:
                with conn.transaction():
                    if latest and not copied_directly:
                        stale_rows = upsert_staged(conn, table, columns, stage_types, rows,
                                                   len(latest) - len(locked & latest.keys()))
                    if deletes:
                        deleted_rows = delete_older(conn, table, [
                            (row_ids[g.record_id], g.version) for g in deletes
                            if row_ids[g.record_id] not in locked])
                break
            except psycopg.errors.LockNotAvailable:
                if attempt == _LOCK_ATTEMPTS:
                    raise
                locked |= locked_rows(conn, table, [*latest, *(row_ids[g.record_id] for g in deletes)])
    not_written = stale_rows | locked
    record_of_row = {row_ids[g.record_id]: g.record_id for g in deletes}
    record_of_row.update((row_id, g.record_id) for row_id, g in latest.items() if row_id in locked)
    result.applied = [g.record_id for row_id, g in latest.items() if row_id not in not_written]
    result.applied += [record_of_row[row_id] for row_id in deleted_rows]
    result.failed = {record_of_row[row_id]: RowLocked(
        f"row locked by another transaction for over {lock_timeout_ms} ms; retried next run")
        for row_id in locked}
    result.failed.update(refused)
    done = set(result.applied) | result.failed.keys()
    result.stale = [g.record_id for g in records if g.record_id not in done]
    # A record new to a bigint table that got no id (a tombstone, a refused record) has no store id yet.
    result.store_ids = {g.record_id: row_ids[g.record_id] for g in records
                        if not (g.record_id in unknown and row_ids[g.record_id] == g.record_id)}
    return result


def _references(table: MappedTable, id_map: IdMap, records: list[GoldenRecord]) -> dict[str, dict[Any, Any]]:
    """Reference field -> each canonical id the batch holds -> the store's id, in the column's Python type.
    A canonical id no store id is known for stays as it is (the record may still arrive), but for a bigint
    column, which cannot hold it: it is left out of the map."""
    out: dict[str, dict[Any, Any]] = {}
    for name in table.fields:
        if not table.entity.field(name).references:
            continue
        values = [v for v in {live_data(g).get(name) for g in records} if v is not None]
        translated = [{name: v} for v in values]
        translate_references(table.entity, translated, id_map, to_store=True)
        column_type = table.field_types[name]
        as_key = _as_key(column_type)
        out[name] = {v: as_key(row[name]) for v, row in zip(values, translated)
                     if column_type != "int8" or str(row[name]).lstrip("-").isdigit()}
    return out


def _unresolved(table: MappedTable, references: dict[str, dict[Any, Any]], records: list[GoldenRecord]
                ) -> dict[str, UnresolvedReference]:
    """The live records referring to a record the store holds no id for (per `references`)."""
    missing = {f: {v for v in known_ids if v not in known} for f, known in references.items()
               if (known_ids := {live_data(g).get(f) for g in records} - {None})}
    if not any(missing.values()):
        return {}
    out = {}
    for g in records:
        data = live_data(g)
        unresolved = [f"{f} {data[f]}" for f, gone in missing.items() if data.get(f) in gone]
        if unresolved:
            out[g.record_id] = UnresolvedReference(f"{table.store} does not hold the record of "
                                                   f"{', '.join(unresolved)} yet; written once it does")
    return out


def _as_key(column_type: str) -> Callable[[Any], Any]:
    """How a COPY row carries a store id into a column of `column_type`."""
    keys: dict[str, Callable[[Any], Any]] = {"int8": int, "uuid": uuid_bytes}
    return keys.get(column_type, str)


def _stage_rows(table: MappedTable, references: dict[str, dict[Any, Any]], latest: dict[str, GoldenRecord],
                locked: set[str], versions: list[tuple[Any, int, Any]] | None = None) -> Iterator[list[Any]]:
    """The stage's rows in column order (id, carried fields, version and modification time); with
    `versions`, the rows end with their fields and their (id, version, modification time) go to that list.
    Text, integer and boolean values pass through, uuids go as their 16 bytes (`writes.wire_types`),
    references were translated once per distinct id. Rows are yielded one at a time: 100k rows held at once
    would wake the garbage collector's full passes."""
    names = table.fields
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for i, name in enumerate(names, 1):
        f = table.entity.field(name)
        if f.references:
            converters.append((i, references[name].__getitem__))
        elif f.type in (FieldType.NUMERIC, FieldType.TIMESTAMP):
            converters.append((i, partial(python_value, f.type)))
        elif f.type == FieldType.UUID:
            converters.append((i, uuid_bytes))
    as_key = _as_key(table.id_type)
    for row_id, g in latest.items():
        if row_id in locked:
            continue
        row = [as_key(row_id), *map(live_data(g).get, names)]
        if versions is None:
            row += (g.version, g.origin_modified_at)
        else:
            versions.append((row[0], g.version, g.origin_modified_at))
        for i, convert in converters:
            if row[i] is not None:
                row[i] = convert(row[i])
        yield row
