"""What the sync installs in a Postgres store, as a list of statements (`sync-pipeline install --print-sql`
prints them, install runs them in one transaction under an advisory lock).

The sync's state lives in its own schema, keyed by table and id: the change log (the id as text, so uuid,
bigint and text ids all fit), with the row version each change was made over, and, per app table, the row
versions that guard every write, keyed by the table's own id type (a 16-byte uuid or an 8-byte bigint is a
smaller, faster key than text: a batch of new rows writes its versions at nearly the speed of the rows).
The only thing added to an app table is the change-capture trigger. An app table is created only when the configuration says `create: true` (the sandbox), and then, where the store is reached
by Supabase's Data API, with row-level security on and no policy (nobody reaches it through the API).
"""

from __future__ import annotations

import hashlib

from psycopg import sql

from sync_pipeline.stores.postgres.catalog import LiveTable
from sync_pipeline.stores.postgres.tables import MappedTable

CDC_SCHEMA = "sync_cdc"
CHANGE_LOG = sql.Identifier(CDC_SCHEMA, "change_log")
# The table of row versions of an earlier version of the sync, shared by all tables (keyed by table and id as
# text): install moves its entries into the tables' own and drops it.
SHARED_ROW_VERSIONS = sql.Identifier(CDC_SCHEMA, "row_versions")
# Our own writes set this for their transaction (`set_config(..., true)`: transaction-scoped, so it holds
# behind a transaction pooler); the capture trigger's WHEN clause skips them, so they are not logged.
WRITER_SETTING = "sync_pipeline.writer"
_NOT_OUR_WRITE = sql.SQL("current_setting({}, true) is distinct from 'sync'").format(
    sql.Literal(WRITER_SETTING))
LOCK = sql.SQL("select pg_advisory_xact_lock(hashtext('sync_pipeline.install'))")
Statement = sql.SQL | sql.Composed


class InstallRefused(RuntimeError):
    """The configuration names a table that does not exist and does not ask to create it."""


def capture_trigger(table: MappedTable) -> str:
    return f"{table.entity.name}_sync_cdc"


# Postgres cuts a longer name to this many bytes, silently: two long table keys sharing their first bytes
# would share one row versions table and one capture function (a table's changes logged as the other's).
_MAX_NAME_BYTES = 63


def cdc_name(table: MappedTable, suffix: str) -> str:
    """The name of one of the table's objects in the sync's schema: `schema.table.suffix`, or, where that would
    be cut, the key's start and a digest of the whole key (unique per table, within the limit)."""
    name = f"{table.key}.{suffix}"
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    tail = f"~{hashlib.sha256(table.key.encode()).hexdigest()[:12]}.{suffix}"
    return _cut(table.key, _MAX_NAME_BYTES - len(tail.encode())) + tail


def cut_cdc_name(table: MappedTable, suffix: str) -> str | None:
    """The name Postgres gave the object when an earlier version named it `schema.table.suffix` in full, if
    that was cut."""
    name = f"{table.key}.{suffix}"
    return _cut(name, _MAX_NAME_BYTES) if len(name.encode()) > _MAX_NAME_BYTES else None


def _cut(text: str, limit: int) -> str:
    """The longest start of `text` within `limit` bytes of UTF-8, no character split (as Postgres cuts)."""
    return text.encode()[:limit].decode(errors="ignore")


def versions_name(table: MappedTable) -> str:
    return cdc_name(table, "versions")


def row_versions(table: MappedTable) -> sql.Identifier:
    """The versions of the rows of `table` the sync wrote, keyed by the table's own id type."""
    return sql.Identifier(CDC_SCHEMA, versions_name(table))


def _legacy_touch_trigger(table: MappedTable) -> str:
    """The trigger of earlier versions that overwrote an app column (`updated_at`): dropped by install."""
    return f"{table.entity.name}_sync_touch"


_SYNC_SCHEMA = sql.SQL("""
create schema if not exists {cdc};
create table if not exists {log} (
  seq          bigserial   primary key,
  txid         xid8        not null default pg_current_xact_id(),
  tbl          text        not null,
  op           char(1)     not null,
  pk           text        not null,
  base_version bigint      not null default 0,
  row_data     jsonb       not null,
  changed_at   timestamptz not null default clock_timestamp());
create index if not exists change_log_tbl_txid_seq on {log} (tbl, txid, seq)""")

# Half of each page free: a batch rewriting every entry stays HOT (the sync rewrites entries far more often
# than it adds them).
_ROW_VERSIONS = sql.SQL("""
create table if not exists {versions} (
  pk          {id_type}   primary key,
  version     bigint      not null,
  modified_at timestamptz not null) with (fillfactor = 50)""")

# One function per table, static SQL on the table's own versions. A change carries the row version it was
# made over (the hub's version the store last received: an older one means the record changed elsewhere
# meanwhile); a delete takes the row's version entry with it.
# Security definer: the application's own roles (Supabase's `authenticated`, say) write the app table and so
# fire the trigger, but are granted nothing in the sync's schema; the function runs as its owner, with a
# search path that no caller can shadow.
_LOG_CHANGE = sql.SQL("""
create or replace function {function}() returns trigger language plpgsql
security definer set search_path = pg_catalog, pg_temp as $$
declare
  row_json jsonb := to_jsonb(case when TG_OP = 'DELETE' then OLD else NEW end);
  over     bigint;
begin
  if TG_OP = 'DELETE' then
    delete from {versions} v where v.pk = OLD.{id} returning v.version into over;
  else
    select v.version into over from {versions} v where v.pk = NEW.{id};
  end if;
  insert into {log} (tbl, op, pk, base_version, row_data)
  values ({key}, left(TG_OP, 1), row_json ->> {id_name}, coalesce(over, 0), row_json);
  return null;
end $$""")


def sync_schema_statements(log: LiveTable | None, shared_versions: LiveTable | None,
                           tables: list[MappedTable], cdc_relations: set[str]) -> list[Statement]:
    """The sync's own schema and each table's row versions; `log` is the change log as it stands (one of an
    earlier version, keyed by a uuid and the table's bare name, is converted), `shared_versions` the table
    of row versions of an earlier version (its entries move to the tables' own, then it goes),
    `cdc_relations` the names the sync's schema holds (a versions table whose name Postgres cut is renamed)."""
    names = {"cdc": sql.Identifier(CDC_SCHEMA), "log": CHANGE_LOG}
    statements: list[Statement] = [_SYNC_SCHEMA.format(**names)]
    for t in tables:
        cut = cut_cdc_name(t, "versions")
        if cut in cdc_relations and versions_name(t) not in cdc_relations:
            # Two tables may have shared it: the first takes it, the next starts its own.
            cdc_relations = cdc_relations - {cut}
            statements.append(sql.SQL("alter table {} rename to {}").format(
                sql.Identifier(CDC_SCHEMA, cut), sql.Identifier(versions_name(t))))
    statements += [_ROW_VERSIONS.format(versions=row_versions(t), id_type=sql.SQL(t.id_type)) for t in tables]
    if shared_versions is not None:
        statements += [sql.SQL("""
            insert into {versions} (pk, version, modified_at)
            select s.pk::{id_type}, s.version, s.modified_at from {shared} s where s.tbl = {key}
            on conflict (pk) do nothing""").format(
            versions=row_versions(t), id_type=sql.SQL(t.id_type), shared=SHARED_ROW_VERSIONS,
            key=sql.Literal(t.key)) for t in tables]
        statements.append(sql.SQL("drop table {}").format(SHARED_ROW_VERSIONS))
    if log is not None and log.columns["pk"].type == "uuid":
        statements.append(sql.SQL(
            "alter table {log} alter column pk type text, add column if not exists base_version bigint "
            "not null default 0").format(**names))
        statements += [sql.SQL(
            "update {log} set tbl = {key}, base_version = coalesce((row_data ->> 'sync_version')::bigint, 0) "
            "where tbl = {bare}").format(key=sql.Literal(t.key), bare=sql.Literal(t.mapping.table), **names)
            for t in tables]
    return statements


def table_statements(table: MappedTable, live: LiveTable | None, data_api: bool) -> list[Statement]:
    """Create the table if the configuration asks for it, and install its capture trigger. `data_api`: the
    database is reached by Supabase's Data API, so a table the sync creates gets row-level security."""
    t = table.ident
    statements: list[Statement] = []
    if live is None:
        if not table.mapping.create:
            raise InstallRefused(f"{table.label} does not exist, and the configuration does not ask to "
                                 "create it (create: false)")
        statements.append(_create_table(table))
    elif table.mapping.create:
        # A table the sync created for the sandbox takes the fields added to the configuration since.
        statements += [sql.SQL("alter table {} add column {} {}").format(
            t, sql.Identifier(column), sql.SQL(table.field_types[name]))
            for name, column in table.mapping.columns.items() if column not in live.columns]
    if table.mapping.create and data_api and not (live and live.row_level_security):
        statements.append(sql.SQL("alter table {} enable row level security").format(t))
    if live is not None and _legacy_touch_trigger(table) in live.triggers:
        statements += _leave_legacy_install(table, live)
    function = sql.Identifier(CDC_SCHEMA, cdc_name(table, "log_change"))
    statements.append(_LOG_CHANGE.format(function=function, versions=row_versions(table), id=table.id_column,
                                         log=CHANGE_LOG, key=sql.Literal(table.key),
                                         id_name=sql.Literal(table.mapping.id_column)))
    statements.append(sql.SQL("""
        create or replace trigger {trigger} after insert or update or delete on {t} for each row
          when ({ours}) execute function {function}()""").format(
        trigger=sql.Identifier(capture_trigger(table)), t=t, ours=_NOT_OUR_WRITE, function=function))
    return statements


def _create_table(table: MappedTable) -> Statement:
    id_type = {"uuid": "uuid", "bigint": "bigint generated by default as identity", "text": "text"}
    columns = [sql.SQL("{} {} primary key").format(table.id_column, sql.SQL(id_type[table.mapping.id_type]))]
    columns += [sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(table.field_types[name]))
                for name, column in table.mapping.columns.items()]
    # Half of each page free: a batch that rewrites every row of a page writes each new row version beside
    # the old one (a HOT update, no index entry to add). At 70 % only 43 % of a 100k-row rewrite stayed HOT
    # and the guarded update took twice as long (bench/postgres_apply.py): the sync rewrites rows far more
    # often than it adds them.
    return sql.SQL("create table {} ({}) with (fillfactor = 50)").format(
        table.ident, sql.SQL(", ").join(columns))


def _leave_legacy_install(table: MappedTable, live: LiveTable) -> list[Statement]:
    """An install of an earlier version kept the row version in the app table (`sync_version`) and
    overwrote `updated_at` by a trigger: the trigger goes, the versions move into the sync's schema, and
    the two columns stay as they are (they are the application's now)."""
    statements: list[Statement] = [sql.SQL("drop trigger {} on {}").format(
        sql.Identifier(_legacy_touch_trigger(table)), table.ident)]
    if {"sync_version", "updated_at"} <= live.columns.keys():
        statements.append(sql.SQL("""
            insert into {versions} (pk, version, modified_at)
            select t.{id}, t.sync_version, t.updated_at from {t} t where t.sync_version > 0
            on conflict (pk) do nothing""").format(
            versions=row_versions(table), id=table.id_column, t=table.ident))
    return statements
