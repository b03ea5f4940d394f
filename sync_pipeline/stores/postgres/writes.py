"""The write half of a Postgres store's apply: binary COPY of canonical rows, the version-guarded update and
upsert from a staging table, guarded deletes, and finding the rows an application holds locked. Each
statement runs in the caller's transaction."""

from __future__ import annotations

from typing import Callable

import psycopg
from psycopg import postgres, pq, sql
from psycopg.adapt import Dumper
from psycopg.rows import DictRow

from sync_pipeline.model.entities import Entity


class UuidTextBinaryDumper(Dumper):
    """Canonical uuid strings straight into a binary COPY, without building `uuid.UUID` objects."""

    format = pq.Format.BINARY
    oid = postgres.types["uuid"].oid

    def dump(self, obj: str) -> bytes:
        raw = bytes.fromhex(obj.replace("-", ""))
        if len(raw) != 16:
            raise ValueError(f"not a UUID: {obj!r}")
        return raw



def upsert_staged(conn: psycopg.Connection[DictRow], entity: Entity, table: sql.Identifier, columns: list[str],
            copy_into: Callable[[psycopg.Cursor[DictRow], sql.Composable], None], rows: int) -> set[str]:
    """Stage the batch's `rows` rows, update those that exist and insert the rest, each under the version
    guard; returns the rows the guard skipped."""
    stage = sql.Identifier(f"stage_{entity.name}")
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    conn.execute(sql.SQL("create temp table {} (like {} including defaults) on commit drop").format(
        stage, table))
    with conn.cursor() as cur:
        cur.adapters.register_dumper(None, UuidTextBinaryDumper)
        copy_into(cur, stage)
        # Rows that exist are updated through a join, cheaper than an upsert's speculative insert
        # of each; what is left goes through the version-guarded upsert, which also settles a row
        # another writer inserts meanwhile. Both statements carry the same version guard.
        cur.execute(sql.SQL("""
            update {t} set {assign} from {stage} s
            where {t}.id = s.id and s.sync_version > {t}.sync_version""").format(
            t=table, stage=stage, assign=sql.SQL(", ").join(
                sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in columns[1:])))
        written = cur.rowcount
        if written < rows:
            cur.execute(sql.SQL("""
                insert into {t} ({cols}) select {cols} from {stage} s
                where not exists (select 1 from {t} where {t}.id = s.id)
                on conflict (id) do update set {updates}
                where excluded.sync_version > {t}.sync_version""").format(
                t=table, cols=cols, stage=stage, updates=sql.SQL(", ").join(
                    sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns[1:])))
            written += cur.rowcount
        # The row counts say whether the guard skipped any row; only then name them: the rows
        # this (sub)transaction did not write, whose xmin is not the stage's. Cheaper than RETURNING
        # every written id.
        if written < rows:
            cur.execute(sql.SQL("""
                select s.id::text as id from {stage} s join {t} t on t.id = s.id
                where t.xmin <> s.xmin""").format(t=table, stage=stage))
            return {r["id"] for r in cur.fetchall()}
    return set()

def delete_older(conn: psycopg.Connection[DictRow], table: sql.Identifier,
            versions: list[tuple[str, int]]) -> list[str]:
    """Delete rows older than their tombstone; returns the rows deleted."""
    if not versions:
        return []
    rows = conn.execute(sql.SQL("""
        delete from {t} t using unnest(%s::uuid[], %s::int8[]) as d(id, version)
        where t.id = d.id and t.sync_version < d.version
        returning t.id::text as id""").format(t=table),
        ([i for i, _ in versions], [v for _, v in versions])).fetchall()
    return [r["id"] for r in rows]

def locked_rows(conn: psycopg.Connection[DictRow], table: sql.Identifier, row_ids: list[str]) -> set[str]:
    """Those of the rows another transaction holds locked. The others are locked by this transaction
    on the way, so that writing them cannot wait any more."""
    rows = conn.execute(sql.SQL("""
        with ours as (select id from {t} where id = any(%s::text[]::uuid[]) for update skip locked)
        select t.id::text as id from {t} t
        where t.id = any(%s::text[]::uuid[]) and not exists (select 1 from ours where ours.id = t.id)""").format(
        t=table), (row_ids, row_ids)).fetchall()
    return {r["id"] for r in rows}

def any_exists(conn: psycopg.Connection[DictRow], table: sql.Identifier, row_ids: list[str]) -> bool:
    return one_row(conn.execute(
        sql.SQL("select exists (select 1 from {} where id = any(%s::text[]::uuid[])) as hit").format(table),
        (row_ids,)))["hit"]


def one_row(cursor: psycopg.Cursor[DictRow]) -> DictRow:
    """The row of a statement that always returns one (an aggregate, a bare select of expressions)."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("the statement returned no row")
    return row
