"""Tables whose `schema.table` names are long: Postgres cuts a name at 63 bytes without an error, so two long
names sharing their start once shared one row versions table and one capture function, and a table's changes
were logged as the other's. Each now gets objects of its own; a versions table an earlier install got under
a cut name is renamed, its entries kept."""

from __future__ import annotations

import copy

from sync_pipeline.model.entities import entity
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.postgres.ddl import CDC_SCHEMA, cdc_name, cut_cdc_name, versions_name
from sync_pipeline_tests.helpers import sync_once
from sync_pipeline_tests.stores.postgres.mapped import LOCAL_TABLES, Mapped, mapped_config, new_email, run_sql

COMPANIES, PEOPLE = entity("companies"), entity("people")
SCHEMA = "back_office_replica_kept_for_the_regional_reporting"  # 51 bytes
ACCOUNTS, CONTACTS = "crm_records_of_the_region_accounts", "crm_records_of_the_region_contacts"


def _long_named(m: Mapped, accounts_too: bool = True) -> PostgresStore:
    """The local DB's contacts, and accounts unless told, as tables whose keys share their first 78 bytes."""
    run_sql(m.local_dsn, f"""
        create schema {SCHEMA};
        create table {SCHEMA}.{ACCOUNTS} (like crm.accounts including all);
        create table {SCHEMA}.{CONTACTS} (like crm.contacts including all)""")
    tables = copy.deepcopy(LOCAL_TABLES)
    if accounts_too:
        tables["companies"]["table"] = {"schema": SCHEMA, "name": ACCOUNTS}
    tables["people"]["table"] = {"schema": SCHEMA, "name": CONTACTS}
    return PostgresStore("local_db", m.local_dsn, id_map=m.hub.id_map("local_db"), config=mapped_config(tables))


def test_two_long_names_sharing_their_start_get_objects_of_their_own(mapped: Mapped) -> None:
    m = mapped
    store = _long_named(m)
    accounts, contacts = store.table(COMPANIES), store.table(PEOPLE)
    # Under the old names both would have been cut to the same 63 bytes.
    assert cut_cdc_name(accounts, "versions") == cut_cdc_name(contacts, "versions") is not None
    assert cut_cdc_name(accounts, "log_change") == cut_cdc_name(contacts, "log_change") is not None
    names = [cdc_name(t, suffix) for t in (accounts, contacts) for suffix in ("versions", "log_change")]
    assert len(set(names)) == 4 and all(len(n.encode()) <= 63 for n in names)
    store.install()
    m.supabase.install()

    triggers = run_sql(m.local_dsn, """select c.relname as tbl, p.proname as function from pg_trigger t
                                       join pg_class c on c.oid = t.tgrelid join pg_proc p on p.oid = t.tgfoid
                                       where not t.tgisinternal and c.relnamespace = %s::regnamespace""",
                       (SCHEMA,))
    assert {r["tbl"]: r["function"] for r in triggers} == {ACCOUNTS: cdc_name(accounts, "log_change"),
                                                           CONTACTS: cdc_name(contacts, "log_change")}
    versions = run_sql(m.local_dsn, "select relname from pg_class where relnamespace = %s::regnamespace "
                                    "and relkind = 'r'", (CDC_SCHEMA,))
    assert {versions_name(accounts), versions_name(contacts)} <= {r["relname"] for r in versions}

    # Both tables' first rows have id 1: each change is logged as its own table's.
    [acme] = run_sql(m.local_dsn, f"insert into {SCHEMA}.{ACCOUNTS} (account_name, is_icp) values ('Acme', true) "
                                  "returning account_id")
    email = new_email()
    run_sql(m.local_dsn, f"insert into {SCHEMA}.{CONTACTS} (given_name, email_address, account_id) "
                         "values ('Ada', %s, %s)", (email, acme["account_id"]))
    logged = run_sql(m.local_dsn, f"select tbl, row_data from {CDC_SCHEMA}.change_log order by seq")
    assert [(r["tbl"], "account_name" in r["row_data"], "given_name" in r["row_data"]) for r in logged] == [
        (accounts.key, True, False), (contacts.key, False, True)]

    sync_once(m.hub, [store, m.supabase])
    [member] = run_sql(m.supabase_dsn, "select m.first, o.org_name from public.members m "
                                       "join public.organisations o on o.id = m.org_id where m.mail = %s", (email,))
    assert (member["first"], member["org_name"]) == ("Ada", "Acme")
    # An edit in the app reaches the back office, each table guarded by its own versions.
    run_sql(m.supabase_dsn, "update public.members set job = 'Countess' where mail = %s", (email,))
    run_sql(m.supabase_dsn, "update public.organisations set employees = 12 where org_name = 'Acme'")
    sync_once(m.hub, [store, m.supabase])
    [ada] = run_sql(m.local_dsn, f"select title from {SCHEMA}.{CONTACTS}")
    [acme_now] = run_sql(m.local_dsn, f"select headcount from {SCHEMA}.{ACCOUNTS}")
    assert (ada["title"], acme_now["headcount"]) == ("Countess", 12)
    held = {r["tbl"]: r["version"] for r in run_sql(m.local_dsn, f"""
        select 'accounts' as tbl, version from {CDC_SCHEMA}.{_quoted(versions_name(accounts))}
        union all select 'contacts', version from {CDC_SCHEMA}.{_quoted(versions_name(contacts))}""")}
    assert held == {"accounts": 2, "contacts": 2}


def test_a_versions_table_an_earlier_install_got_under_a_cut_name_is_renamed(mapped: Mapped) -> None:
    m = mapped
    store = _long_named(m, accounts_too=False)
    contacts = store.table(PEOPLE)
    cut = cut_cdc_name(contacts, "versions")
    assert cut is not None
    run_sql(m.local_dsn, f"""create schema {CDC_SCHEMA};
        create table {CDC_SCHEMA}.{_quoted(cut)} (pk bigint primary key, version bigint not null,
                                                  modified_at timestamptz not null);
        insert into {CDC_SCHEMA}.{_quoted(cut)} values (7, 3, now())""")
    store.install()
    store.install()  # a second install finds it renamed: nothing more to do
    rows = run_sql(m.local_dsn, f"select pk, version from {CDC_SCHEMA}.{_quoted(versions_name(contacts))}")
    assert [(r["pk"], r["version"]) for r in rows] == [(7, 3)]
    assert not run_sql(m.local_dsn, "select 1 from pg_class where relname = %s", (cut,))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
