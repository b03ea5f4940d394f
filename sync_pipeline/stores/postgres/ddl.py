"""What the sync installs in a Postgres store: the app tables' sync columns, a change log in its own schema,
and the triggers that fill it. Identifiers go through `psycopg.sql`; the install runs under an advisory
lock so two installs never interleave."""

from __future__ import annotations

from typing import Any, Iterable

import psycopg
from psycopg import sql

from sync_pipeline.model.entities import Entity, FieldType

CDC_SCHEMA = "sync_cdc"
CHANGE_LOG = sql.Identifier(CDC_SCHEMA, "change_log")
# Our own writes set this for their transaction; the triggers' WHEN clauses skip them, so they are neither
# logged nor re-stamped.
WRITER_SETTING = "sync_pipeline.writer"
_NOT_OUR_WRITE = sql.SQL("current_setting({}, true) is distinct from 'sync'").format(sql.Literal(WRITER_SETTING))

PG_TYPES: dict[FieldType, str] = {
    FieldType.UUID: "uuid",
    FieldType.TEXT: "text",
    FieldType.URL: "text",
    FieldType.EMAIL: "text",
    FieldType.INTEGER: "int8",
    FieldType.NUMERIC: "numeric",
    FieldType.BOOLEAN: "bool",
    FieldType.TIMESTAMP: "timestamptz",
    FieldType.ENUM: "text",
}


def trigger_names(entity: Entity) -> tuple[str, str]:
    """The (touch, capture) trigger names of an entity's table."""
    return f"{entity.name}_sync_touch", f"{entity.name}_sync_cdc"


def install_capture(conn: psycopg.Connection[Any], schema: str, entities: Iterable[Entity]) -> None:
    """Create the app tables if missing, add the sync columns and install the change capture, in the
    caller's transaction."""
    conn.execute("select pg_advisory_xact_lock(hashtext('sync_pipeline.install'))")
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(CDC_SCHEMA)))
    conn.execute(sql.SQL("""
        create table if not exists {log} (
          seq        bigserial   primary key,
          txid       xid8        not null default pg_current_xact_id(),
          tbl        text        not null,
          op         char(1)     not null,
          pk         uuid        not null,
          row_data   jsonb       not null,
          changed_at timestamptz not null default clock_timestamp());
        create index if not exists change_log_tbl_txid_seq on {log} (tbl, txid, seq);
        create or replace function {cdc}.log_change() returns trigger language plpgsql as $$
        begin
          insert into {log} (tbl, op, pk, row_data)
          values (TG_TABLE_NAME, left(TG_OP, 1), coalesce(NEW.id, OLD.id),
                  to_jsonb(case when TG_OP = 'DELETE' then OLD else NEW end));
          return null;
        end $$;
        create or replace function {cdc}.touch_updated_at() returns trigger language plpgsql as $$
        begin
          NEW.updated_at := clock_timestamp();
          return NEW;
        end $$;
    """).format(log=CHANGE_LOG, cdc=sql.Identifier(CDC_SCHEMA)))
    for entity in entities:
        _install_entity(conn, sql.Identifier(schema, entity.name), entity)


def _install_entity(conn: psycopg.Connection[Any], table: sql.Identifier, entity: Entity) -> None:
    columns: list[sql.Composable] = [sql.SQL("id uuid primary key")]
    columns += [sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(PG_TYPES[f.type])) for f in entity.fields]
    # Free room in each page lets an update write the new row version beside the old one (a HOT update,
    # no index entry to add): the sync rewrites rows far more often than it adds them.
    conn.execute(sql.SQL("create table if not exists {} ({}) with (fillfactor = 70)").format(
        table, sql.SQL(", ").join(columns)))
    for f in entity.fields:
        conn.execute(sql.SQL("alter table {} add column if not exists {} {}").format(
            table, sql.Identifier(f.name), sql.SQL(PG_TYPES[f.type])))
    conn.execute(sql.SQL("""
        alter table {t} add column if not exists sync_version bigint not null default 0;
        alter table {t} add column if not exists updated_at timestamptz not null default clock_timestamp();
    """).format(t=table))
    touch, cdc = trigger_names(entity)
    conn.execute(sql.SQL("""
        create or replace trigger {touch} before update on {t} for each row
          when ({ours}) execute function {cdc_schema}.touch_updated_at();
        create or replace trigger {cdc} after insert or update or delete on {t} for each row
          when ({ours}) execute function {cdc_schema}.log_change();
    """).format(touch=sql.Identifier(touch), cdc=sql.Identifier(cdc), t=table, ours=_NOT_OUR_WRITE,
                cdc_schema=sql.Identifier(CDC_SCHEMA)))
