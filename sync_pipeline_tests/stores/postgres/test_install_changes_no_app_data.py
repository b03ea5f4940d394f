"""Install on app schemas the sync did not make (`mapped.py`) changes no app table's columns or rows: the
only thing it adds to each is the capture trigger. `--print-sql` shows every statement and runs none."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from sync_pipeline.model.entities import entity
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.postgres.ddl import InstallRefused
from sync_pipeline_tests.stores.postgres.mapped import Mapped, mapped_config, new_email, run_sql

APP_TABLES = {"local": ["crm.accounts", "crm.contacts"], "supabase": ["public.organisations", "public.members"]}


def _app_state(dsn: str, tables: list[str]) -> dict[str, Any]:
    """Everything an app could see of its tables: columns (pg_attribute), defaults, constraints, indexes,
    options, row-level security and policies, the storage file, and every row with its ctid and xmin (a row
    rewritten even to the same values would show a new xmin). Triggers apart."""
    state: dict[str, Any] = {}
    for table in tables:
        state[table] = {
            "columns": run_sql(dsn, """select attnum, attname, atttypid::regtype::text as type, atttypmod,
                                              attnotnull, atthasdef, attidentity, attgenerated, attisdropped,
                                              attcollation, pg_get_expr(d.adbin, d.adrelid) as default_expr
                                       from pg_attribute a left join pg_attrdef d
                                         on d.adrelid = a.attrelid and d.adnum = a.attnum
                                       where attrelid = %s::regclass and attnum > 0 order by attnum""", (table,)),
            "constraints": run_sql(dsn, "select conname, pg_get_constraintdef(oid) as def from pg_constraint "
                                        "where conrelid = %s::regclass order by conname", (table,)),
            "indexes": run_sql(dsn, "select indexrelid::regclass::text as name, pg_get_indexdef(indexrelid) "
                                    "as def from pg_index where indrelid = %s::regclass order by 1", (table,)),
            "relation": run_sql(dsn, """select relfilenode, reloptions, relrowsecurity, relforcerowsecurity,
                                               relacl::text from pg_class where oid = %s::regclass""", (table,)),
            "policies": run_sql(dsn, "select polname from pg_policy where polrelid = %s::regclass", (table,)),
            "rows": run_sql(dsn, f"select ctid::text, xmin::text, t::text as row from {table} t order by ctid"),
        }
    return state


def _triggers(dsn: str, table: str) -> set[str]:
    return {r["tgname"] for r in run_sql(
        dsn, "select tgname from pg_trigger where tgrelid = %s::regclass and not tgisinternal", (table,))}


def _fill(m: Mapped) -> None:
    [acme] = run_sql(m.local_dsn, "insert into crm.accounts (account_name, headcount, internal_notes) "
                                  "values ('Acme', 12, 'secret') returning account_id")
    run_sql(m.local_dsn, "insert into crm.contacts (given_name, email_address, account_id, internal_notes) "
                         "values ('Ada', %s, %s, 'do not sync'), ('Alan', %s, null, null)",
            (new_email(), acme["account_id"], new_email()))
    [org] = run_sql(m.supabase_dsn, "insert into public.organisations (org_name, ideal) values ('Globex', true) "
                                    "returning id")
    run_sql(m.supabase_dsn, "insert into public.members (first, mail, org_id, avatar_url) values "
                            "('Bob', %s, %s, 'https://img.example/b.png')", (new_email(), org["id"]))


def test_install_leaves_every_app_column_and_row_as_it_was_but_for_the_trigger(mapped: Mapped) -> None:
    m = mapped
    _fill(m)
    targets = [(m.local_db, m.local_dsn, APP_TABLES["local"]), (m.supabase, m.supabase_dsn, APP_TABLES["supabase"])]
    before = {dsn: _app_state(dsn, tables) for _, dsn, tables in targets}
    for store, dsn, tables in targets:
        store.install()
        store.install()  # idempotent
        assert _app_state(dsn, tables) == before[dsn]
        for table in tables:
            assert len(_triggers(dsn, table)) == 1 and all(t.endswith("_sync_cdc") for t in _triggers(dsn, table))
        # the sync's state lives in its own schema only: the change log and each table's row versions
        assert {r["table_name"] for r in run_sql(dsn, "select table_name from information_schema.tables "
                                                      "where table_schema = 'sync_cdc'")} == {
            "change_log", *(f"{table}.versions" for table in tables)}
    # an app edit is captured, keyed by the table and its id as text; the app row stays the app's
    run_sql(m.local_dsn, "update crm.contacts set title = 'Countess' where given_name = 'Ada'")
    [logged] = run_sql(m.local_dsn, "select tbl, op, pk, base_version, row_data from sync_cdc.change_log")
    assert (logged["tbl"], logged["op"], logged["base_version"]) == ("crm.contacts", "U", 0)
    assert logged["pk"] == str(logged["row_data"]["contact_id"])


def test_print_sql_shows_every_statement_and_runs_none(mapped: Mapped) -> None:
    m = mapped
    _fill(m)
    before = _app_state(m.local_dsn, APP_TABLES["local"])
    statements = m.local_db.install_sql()
    assert run_sql(m.local_dsn, "select to_regnamespace('sync_cdc') is null as absent") == [{"absent": True}]
    assert _app_state(m.local_dsn, APP_TABLES["local"]) == before
    assert not _triggers(m.local_dsn, "crm.contacts")
    text = "\n".join(statements)
    assert statements[0].startswith("select pg_advisory_xact_lock")
    assert 'create table if not exists "sync_cdc"."crm.contacts.versions"' in text
    for trigger, table in (("companies_sync_cdc", '"crm"."accounts"'), ("people_sync_cdc", '"crm"."contacts"')):
        assert f'create or replace trigger "{trigger}" after insert or update or delete on {table}' in text
    assert "alter table" not in text.replace('alter table "sync_cdc"', "")  # not one app table altered
    # running exactly what was printed installs the capture
    with psycopg.connect(m.local_dsn) as conn:
        for statement in statements:
            conn.execute(statement)
    assert m.local_db.capture_status(entity("people"), None)["ready"]


def test_install_refuses_a_missing_table_it_is_not_asked_to_create(mapped: Mapped) -> None:
    m = mapped
    run_sql(m.local_dsn, "drop table crm.contacts")
    with pytest.raises(InstallRefused, match=r"local_db table crm\.contacts \(people\) does not exist"):
        m.local_db.install()


def test_tables_the_configuration_asks_for_are_created_with_row_level_security_in_supabase(mapped: Mapped) -> None:
    m = mapped
    leads = {"people": {"table": {"schema": "public", "name": "leads"}, "id": {"column": "id", "type": "bigint"},
                        "columns": {"first_name": "given_name", "email": "email_address"}, "create": True}}
    config = mapped_config(local=leads, supabase=leads)
    for name, dsn, protected in (("supabase", m.supabase_dsn, True), ("local_db", m.local_dsn, False)):
        PostgresStore(name, dsn, config=config).install()
        [table] = run_sql(dsn, "select relrowsecurity from pg_class where oid = 'public.leads'::regclass")
        assert table["relrowsecurity"] is protected  # only where Supabase's Data API reaches it
        assert run_sql(dsn, "select polname from pg_policy where polrelid = 'public.leads'::regclass") == []
        # the identity the sync made gives an application's rows their ids
        [row] = run_sql(dsn, "insert into public.leads (given_name, email_address) values ('Ann', %s) "
                             "returning id", (new_email(),))
        assert isinstance(row["id"], int)


LEGACY_INSTALL = """
create schema sync_cdc;
create table sync_cdc.change_log (
  seq bigserial primary key, txid xid8 not null default pg_current_xact_id(), tbl text not null,
  op char(1) not null, pk uuid not null, row_data jsonb not null,
  changed_at timestamptz not null default clock_timestamp());
create function sync_cdc.touch_updated_at() returns trigger language plpgsql as $$
begin NEW.updated_at := clock_timestamp(); return NEW; end $$;
create table public.people (
  id uuid primary key, first_name text, last_name text, email text, phone text, job_title text, city text,
  linkedin_url text, company_id uuid,
  sync_version bigint not null default 0, updated_at timestamptz not null default clock_timestamp());
create trigger people_sync_touch before update on public.people for each row
  execute function sync_cdc.touch_updated_at();
insert into public.people (id, first_name, email, city, sync_version)
  values ('00000000-0000-0000-0000-000000000001', 'Ada', 'ada@example.com', 'London', 3);
insert into sync_cdc.change_log (tbl, op, pk, row_data)
  select 'people', 'U', id, to_jsonb(p) from public.people p;
"""


def test_an_earlier_install_is_taken_over_without_touching_the_app_columns(postgres_server) -> None:
    """An install of an earlier version kept the row version in the app table and overwrote updated_at by a
    trigger: install drops that trigger, moves the versions into sync_cdc, converts the pending changes,
    and leaves both columns to the application."""
    name = f"legacy_{uuid.uuid4().hex[:8]}"
    dsn = postgres_server.create_database(name)
    try:
        _take_over_legacy(dsn)
    finally:
        postgres_server.drop_database(name)


def _take_over_legacy(dsn: str) -> None:
    run_sql(dsn, LEGACY_INSTALL)
    store = PostgresStore("local_db", dsn)
    store.install()
    assert _triggers(dsn, "public.people") == {"people_sync_cdc"}
    assert run_sql(dsn, 'select pk::text, version from sync_cdc."public.people.versions"') == [
        {"pk": "00000000-0000-0000-0000-000000000001", "version": 3}]
    [change] = store.capture(entity("people"), None, 10).changes
    assert (change.store_record_id, change.base_version, change.row["city"]) == (
        "00000000-0000-0000-0000-000000000001", 3, "London")
    assert {"sync_version", "updated_at"} <= {r["attname"] for r in run_sql(
        dsn, "select attname from pg_attribute where attrelid = 'public.people'::regclass and attnum > 0")}
    store.install()  # and installs again as usual


SHARED_VERSIONS_INSTALL = """
create table sync_cdc.row_versions (
  tbl text collate "C" not null, pk text collate "C" not null, version bigint not null,
  modified_at timestamptz not null, primary key (tbl, pk));
insert into sync_cdc.row_versions values
  ('public.people', '00000000-0000-0000-0000-000000000002', 4, '2025-01-02'),
  ('public.companies', '00000000-0000-0000-0000-000000000003', 5, '2025-01-03');
"""


def test_row_versions_shared_by_all_tables_move_into_each_tables_own(postgres_server) -> None:
    """An install of an earlier version kept every table's row versions in one table keyed by table and id
    as text: install moves each entry into its table's own versions, keyed by the id's type, and drops it."""
    name = f"shared_{uuid.uuid4().hex[:8]}"
    dsn = postgres_server.create_database(name)
    try:
        store = PostgresStore("local_db", dsn)
        store.install()
        run_sql(dsn, SHARED_VERSIONS_INSTALL)
        store.install()
        assert run_sql(dsn, "select to_regclass('sync_cdc.row_versions') is null as gone") == [{"gone": True}]
        assert run_sql(dsn, 'select pk, version from sync_cdc."public.people.versions"') == [
            {"pk": uuid.UUID(int=2), "version": 4}]
        assert run_sql(dsn, 'select pk, version from sync_cdc."public.companies.versions"') == [
            {"pk": uuid.UUID(int=3), "version": 5}]
    finally:
        postgres_server.drop_database(name)
