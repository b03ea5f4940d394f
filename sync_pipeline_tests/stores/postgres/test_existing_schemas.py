"""Syncing app schemas that differ from the canonical one (`mapped.py`): a bigint identity id in the local DB,
text ids in Supabase, other table and column names, a field only the local DB carries, columns the sync
leaves alone. Edits, inserts and deletes go both ways with the usual guarantees: conflicts logged, replays
no-ops, invalid records quarantined, our own writes never captured again."""

from __future__ import annotations

from typing import Any

from sync_pipeline import pipeline
from sync_pipeline.model.entities import entity
from sync_pipeline_tests.helpers import SETTINGS, sync_once
from sync_pipeline_tests.stores.postgres.mapped import Mapped, new_email, run_sql

COMPANIES, PEOPLE = entity("companies"), entity("people")


def _install(m: Mapped) -> None:
    m.local_db.install()
    m.supabase.install()


def _accounts(m: Mapped) -> dict[str, dict[str, Any]]:
    return {r["account_name"]: r for r in run_sql(m.local_dsn, "select * from crm.accounts")}


def _contacts(m: Mapped) -> dict[str, dict[str, Any]]:
    return {r["given_name"]: r for r in run_sql(m.local_dsn, "select * from crm.contacts")}


def _orgs(m: Mapped) -> dict[str, dict[str, Any]]:
    return {r["org_name"]: r for r in run_sql(m.supabase_dsn, "select * from public.organisations")}


def _members(m: Mapped) -> dict[str, dict[str, Any]]:
    return {r["first"]: r for r in run_sql(m.supabase_dsn, "select * from public.members")}


def _seed(m: Mapped) -> dict[str, Any]:
    """An account and its contact made in the back office, an organisation and its member made in the app."""
    [acme] = run_sql(m.local_dsn, """insert into crm.accounts (account_name, website, headcount, is_icp,
                                      internal_notes) values ('Acme', 'https://acme.example', 40, true,
                                      'pays late') returning account_id""")
    ada = new_email()
    run_sql(m.local_dsn, """insert into crm.contacts (given_name, family_name, email_address, phone_number,
                            account_id, internal_notes) values ('Ada', 'Lovelace', %s, '+44 20 7946 0000', %s,
                            'met at the fair')""", (ada, acme["account_id"]))
    [globex] = run_sql(m.supabase_dsn, """insert into public.organisations (org_name, domain, ideal)
                                          values ('Globex', 'https://globex.example', false) returning id""")
    bob = new_email()
    run_sql(m.supabase_dsn, "insert into public.members (first, last, mail, town, org_id, avatar_url) "
                            "values ('Bob', 'Builder', %s, 'Leeds', %s, 'https://img.example/bob.png')",
            (bob, globex["id"]))
    return {"ada": ada, "bob": bob}


def test_inserts_flow_both_ways_under_each_stores_ids_and_names(mapped: Mapped) -> None:
    m = mapped
    _install(m)
    emails = _seed(m)
    sync_once(m.hub, m.stores)

    accounts, contacts, orgs, members = _accounts(m), _contacts(m), _orgs(m), _members(m)
    assert set(accounts) == set(orgs) == {"Acme", "Globex"}
    assert set(contacts) == set(members) == {"Ada", "Bob"}
    # the back office gave the app's records ids from its identity; references follow each store's ids
    assert isinstance(accounts["Globex"]["account_id"], int)
    assert contacts["Bob"]["account_id"] == accounts["Globex"]["account_id"]
    assert contacts["Bob"]["email_address"] == emails["bob"] and contacts["Bob"]["city"] == "Leeds"
    # the app's text ids: its own rows keep theirs, the back office's records come in under their canonical id
    assert members["Ada"]["org_id"] == orgs["Acme"]["id"]
    assert orgs["Globex"]["domain"] == "https://globex.example" and orgs["Acme"]["employees"] == 40
    # every store id is known to the hub's id map, both ways, and one golden record per record
    golden = m.hub.golden_snapshot("people")
    assert len(golden) == 2
    local_ids = m.hub.record_ids_for("local_db", "people", [str(c["contact_id"]) for c in contacts.values()])
    supabase_ids = m.hub.record_ids_for("supabase", "people", [r["id"] for r in members.values()])
    assert set(local_ids.values()) == set(supabase_ids.values()) == set(golden)
    # the phone only the back office carries is in the hub, and nowhere in the app's table
    ada_id = local_ids[str(contacts["Ada"]["contact_id"])]
    assert golden[ada_id][1]["phone"] == "+44 20 7946 0000"
    # the sync's own writes were not captured again
    again = sync_once(m.hub, m.stores)
    assert all(s.read == 0 for k, s in again.items() if k[0] in ("capture", "resolve", "publish"))


def test_edits_and_deletes_flow_both_ways_and_leave_other_columns_alone(mapped: Mapped) -> None:
    m = mapped
    _install(m)
    _seed(m)
    sync_once(m.hub, m.stores)
    ada_row = _members(m)["Ada"]["id"]
    bob_row = _contacts(m)["Bob"]["contact_id"]
    run_sql(m.supabase_dsn, "update public.members set job = 'Analyst' where id = %s", (ada_row,))
    run_sql(m.local_dsn, "update crm.contacts set city = 'York' where contact_id = %s", (bob_row,))
    sync_once(m.hub, m.stores)

    contacts, members = _contacts(m), _members(m)
    assert contacts["Ada"]["title"] == "Analyst" and members["Bob"]["town"] == "York"
    # a field the app does not carry is not erased by the app's edit; unmapped columns keep their values
    assert contacts["Ada"]["phone_number"] == "+44 20 7946 0000"
    assert contacts["Ada"]["internal_notes"] == "met at the fair"
    assert members["Bob"]["avatar_url"] == "https://img.example/bob.png"
    assert _accounts(m)["Acme"]["internal_notes"] == "pays late"

    run_sql(m.local_dsn, "delete from crm.contacts where contact_id = %s", (bob_row,))
    run_sql(m.supabase_dsn, "delete from public.organisations where org_name = 'Acme'")
    sync_once(m.hub, m.stores)
    assert set(_members(m)) == {"Ada"} and set(_contacts(m)) == {"Ada"}
    assert set(_orgs(m)) == set(_accounts(m)) == {"Globex"}
    # the sync's state follows: no version entry of a deleted row is left behind
    left = run_sql(m.local_dsn, 'select pk from sync_cdc."crm.contacts.versions"')
    assert [r["pk"] for r in left] == [_contacts(m)["Ada"]["contact_id"]]


def test_concurrent_edits_conflict_once_replays_change_nothing_invalid_records_wait(mapped: Mapped) -> None:
    m = mapped
    _install(m)
    _seed(m)
    sync_once(m.hub, m.stores)
    ada_member = _members(m)["Ada"]["id"]
    ada_contact = _contacts(m)["Ada"]["contact_id"]
    run_sql(m.supabase_dsn, "update public.members set town = 'Paris', job = 'CTO' where id = %s", (ada_member,))
    run_sql(m.local_dsn, "update crm.contacts set city = 'Berlin', family_name = 'King' where contact_id = %s",
            (ada_contact,))
    broken = new_email()
    run_sql(m.supabase_dsn, "insert into public.members (first, mail) values ('Eve', 'not-an-email'), "
                            "('Frank', %s)", (broken,))
    # what the capture will read, read ahead, to be replayed once it was applied
    batch = m.supabase.capture(PEOPLE, m.hub.get_cursor("supabase", "people"), 100)
    stats = sync_once(m.hub, m.stores)

    assert stats[("capture", "supabase", "people")].quarantined == 1
    with m.hub.connect() as conn:
        conflicts = conn.execute("select differing_fields from sync.conflicts where entity = 'people'").fetchall()
        [quarantined] = conn.execute("select reason from sync.quarantine where store = 'supabase'").fetchall()
    assert len(conflicts) == 1 and "city" in conflicts[0]["differing_fields"]
    assert "not-an-email" in quarantined["reason"]
    contacts, members = _contacts(m), _members(m)
    # one winner for the field both changed, the fields changed on one side only merged, in both stores
    assert contacts["Ada"]["city"] == members["Ada"]["town"]
    assert (contacts["Ada"]["title"], contacts["Ada"]["family_name"]) == ("CTO", "King")
    assert (members["Ada"]["job"], members["Ada"]["last"]) == ("CTO", "King")
    assert "Frank" in contacts and "Eve" not in contacts

    # the captured changes replayed change nothing
    record_ids = m.hub.record_ids_for("supabase", "people", [c.store_record_id or c.record_id
                                                             for c in batch.changes])
    changes, _ = pipeline.to_captured(PEOPLE, batch.changes, record_ids)
    assert changes and m.hub.enqueue("supabase", "people", changes, [], batch.cursor, "replay") == 0
    assert pipeline.resolve(m.hub, PEOPLE, "replay", SETTINGS).applied == 0
