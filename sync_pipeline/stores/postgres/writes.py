"""The write half of a Postgres store's apply: binary COPY of canonical rows, the version-guarded update and
insert from a staging table, guarded deletes, and finding the rows an application holds locked. Each
statement runs in the caller's transaction.

The version of each row the sync wrote lives in the table's own row versions in `sync_cdc`, keyed by the
table's id type: the guard takes the version entry first (an update of the entries holding an older
version, or an insert of the missing ones, which also serialises two writers of one row) and writes exactly
the app rows whose entry it took."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat
from psycopg.rows import DictRow

from sync_pipeline.stores.postgres.catalog import LiveTable
from sync_pipeline.stores.postgres.ddl import row_versions
from sync_pipeline.stores.postgres.tables import MappedTable

Rows = Callable[[], Iterable[Sequence[Any]]]
# The stage's bookkeeping columns after the id and the carried fields (named by canonical field).
VERSION_COLUMNS = ("sync_version", "modified_at")


def uuid_bytes(text: str) -> bytes:
    """A canonical uuid string as the 16 bytes of its binary COPY form."""
    raw = bytes.fromhex(text.replace("-", ""))
    if len(raw) != 16:
        raise ValueError(f"not a UUID: {text!r}")
    return raw


def wire_types(types: Sequence[str]) -> list[str]:
    """The types a binary COPY declares for columns of `types`: a uuid's binary form is its 16 bytes, which
    psycopg's C bytes dumper writes as they are, where a Python uuid dumper would cost a call per value. The
    server reads each field by its column's own type, so the column stays a uuid."""
    return ["bytea" if t == "uuid" else t for t in types]


def use_c_bytes_dumper(cur: psycopg.Cursor[DictRow]) -> None:
    """Declared types pick dumpers by oid, and bytea's is psycopg's Python `Binary` dumper: take the C one
    that `bytes` values get, for this cursor."""
    cur.adapters.register_dumper(None, cur.adapters.get_dumper(bytes, PyFormat.BINARY))


def _app_columns(table: MappedTable) -> sql.Composable:
    return sql.SQL(", ").join([table.id_column, *map(sql.Identifier, table.columns)])


def _cast(table: MappedTable, live: LiveTable, name: str, source: str) -> sql.Composable:
    """`source.<field>` cast to the app column's own type (a varchar, an int4, an enum...)."""
    column = table.mapping.columns[name]
    return sql.SQL("{}.{}::{}").format(sql.Identifier(source), sql.Identifier(name),
                                       sql.SQL(live.columns[column].declared))


def copy_rows(cur: psycopg.Cursor[DictRow], target: sql.Composable, columns: sql.Composable, types: list[str],
              rows: Iterable[Sequence[Any]]) -> None:
    use_c_bytes_dumper(cur)
    with cur.copy(sql.SQL("copy {} ({}) from stdin (format binary)").format(target, columns)) as copy:
        copy.set_types(wire_types(types))
        for row in rows:
            copy.write_row(row)


def copy_direct(cur: psycopg.Cursor[DictRow], table: MappedTable, types: list[str], rows: Rows,
                versions: Iterable[tuple[Any, int, Any]]) -> None:
    """COPY the batch straight into the app table (whose columns have the types `types` names), then its
    row versions (id, version, modification time) into the table's row versions: `versions` is read only
    once the rows are written, so the rows may fill it as they go."""
    copy_rows(cur, table.ident, _app_columns(table), types, rows())
    copy_rows(cur, row_versions(table), sql.SQL("pk, version, modified_at"), [types[0], "int8", "timestamptz"],
              versions)


def _assignments(table: MappedTable, live: LiveTable, source: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(table.mapping.columns[n]),
                                                        _cast(table, live, n, source)) for n in table.fields)


def upsert_staged(conn: psycopg.Connection[DictRow], table: MappedTable, live: LiveTable,
                  stage_types: list[str], stage_rows: Rows, rows: int) -> set[str]:
    """Stage the batch's `rows` rows (id, carried fields, version, modification time), write the app rows
    whose version entry the guard lets this batch take, insert those missing; returns the rows the guard
    skipped. Each step runs only while rows are left: a batch of updates is one statement after the stage."""
    stage = sql.Identifier(f"stage_{table.entity.name}")
    names = ["id", *table.fields, *VERSION_COLUMNS]
    conn.execute(sql.SQL("create temp table {} ({}) on commit drop").format(stage, sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in zip(names, stage_types))))
    identity = live.columns[table.mapping.id_column].identity
    parts = {"versions": row_versions(table), "overriding": sql.SQL("overriding system value" if identity else ""),
             "stage": stage, "t": table.ident,
             "id": table.id_column, "cols": _app_columns(table),
             "values": sql.SQL(", ").join(_cast(table, live, n, "s") for n in table.fields),
             "assign": _assignments(table, live, "s"), "assign_won": _assignments(table, live, "won")}
    with conn.cursor() as cur:
        copy_rows(cur, stage, sql.SQL(", ").join(map(sql.Identifier, names)), stage_types, stage_rows())
        # Rows whose entry holds an older version: the entry and the row move to this batch's version (the
        # entries' update hands on the staged rows it took, so the rows' update is one join).
        cur.execute(sql.SQL("""
            with won as (
              update {versions} v set version = s.sync_version, modified_at = s.modified_at from {stage} s
              where v.pk = s.id and s.sync_version > v.version
              returning s.*)
            update {t} set {assign_won} from won where {t}.{id} = won.id""").format(**parts))
        written = cur.rowcount
        if written < rows:
            # Rows without an entry (the application's own rows, never written by the sync) take one.
            cur.execute(sql.SQL("""
                with fresh as (
                  insert into {versions} (pk, version, modified_at)
                  select s.id, s.sync_version, s.modified_at from {stage} s
                  where not exists (select 1 from {versions} v where v.pk = s.id)
                  on conflict (pk) do nothing
                  returning pk)
                update {t} set {assign} from {stage} s join fresh on fresh.pk = s.id
                where {t}.{id} = s.id""").format(**parts))
            written += cur.rowcount
        if written < rows:
            # A missing row is inserted whatever version its entry holds (the application deleted it, or
            # the table was truncated); a row another writer inserts meanwhile is left to it (reported stale).
            cur.execute(sql.SQL("""
                insert into {t} ({cols}) {overriding} select s.id, {values} from {stage} s
                where not exists (select 1 from {t} where {t}.{id} = s.id)
                on conflict ({id}) do nothing""").format(**parts))
            written += cur.rowcount
        # The row counts say whether the guard skipped any row; only then name them: the rows this
        # (sub)transaction did not write, whose xmin is not the stage's. Cheaper than RETURNING every id.
        if written < rows:
            cur.execute(sql.SQL("""
                select s.id::text as id from {stage} s join {t} t on t.{id} = s.id
                where t.xmin <> s.xmin""").format(**parts))
            return {r["id"] for r in cur.fetchall()}
    return set()


def delete_older(conn: psycopg.Connection[DictRow], table: MappedTable,
                 versions: list[tuple[str, int]]) -> list[str]:
    """Delete rows older than their tombstone, and their version entries; returns the rows deleted."""
    if not versions:
        return []
    rows = conn.execute(sql.SQL("""
        with gone as (
          delete from {t} t using unnest(%b::text[], %b::int8[]) as d(pk, version)
          where t.{id} = d.pk::{id_type}
            and coalesce((select v.version from {versions} v where v.pk = t.{id}), 0) < d.version
          returning t.{id} as pk),
        forgotten as (delete from {versions} v using gone where v.pk = gone.pk)
        select pk::text as pk from gone""").format(
        t=table.ident, id=table.id_column, id_type=sql.SQL(table.id_type), versions=row_versions(table)), ([i for i, _ in versions], [v for _, v in versions])).fetchall()
    return [r["pk"] for r in rows]


def locked_rows(conn: psycopg.Connection[DictRow], table: MappedTable, row_ids: list[str]) -> set[str]:
    """Those of the rows another transaction holds locked. The others are locked by this transaction
    on the way, so that writing them cannot wait any more."""
    rows = conn.execute(sql.SQL("""
        with ours as (select {id} from {t} where {id} = any({ids}) for update skip locked)
        select t.{id}::text as id from {t} t
        where t.{id} = any({ids}) and not exists (select 1 from ours where ours.{id} = t.{id})""").format(
        t=table.ident, id=table.id_column, ids=table.ids_param()), (row_ids, row_ids)).fetchall()
    return {r["id"] for r in rows}


def any_exists(conn: psycopg.Connection[DictRow], table: MappedTable, row_ids: list[str]) -> bool:
    return one_row(conn.execute(sql.SQL("select exists (select 1 from {} where {} = any({})) as hit").format(
        table.ident, table.id_column, table.ids_param()), (row_ids,)))["hit"]


def allocate_ids(conn: psycopg.Connection[DictRow], table: MappedTable, count: int) -> list[str]:
    """New ids from a bigint id column's identity (or serial) sequence, one statement for the batch."""
    sequence = one_row(conn.execute("select pg_get_serial_sequence(%s, %s) as seq",
                                    (table.ident.as_string(conn), table.mapping.id_column)))["seq"]
    if sequence is None:
        raise LookupError(f"{table.label}: the bigint id column {table.mapping.id_column} has no identity or "
                          "sequence, so the sync cannot give new rows an id")
    rows = conn.execute("select nextval(%s::regclass)::text as id from generate_series(1, %s)",
                        (sequence, count)).fetchall()
    return [r["id"] for r in rows]


def one_row(cursor: psycopg.Cursor[DictRow]) -> DictRow:
    """The row of a statement that always returns one (an aggregate, a bare select of expressions)."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("the statement returned no row")
    return row
