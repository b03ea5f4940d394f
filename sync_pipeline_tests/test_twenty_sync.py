"""Twenty CRM synced both ways with Supabase and the local DB, over real HTTP against the stand-in."""

from __future__ import annotations

import uuid

import psycopg

from sync_pipeline import pipeline
from sync_pipeline.model.entities import entity
from sync_pipeline.webhooks.receiver import parse_event
from sync_pipeline_tests.helpers import SETTINGS, insert_person, people, sync_once

PEOPLE, COMPANIES = entity("people"), entity("companies")


def _twenty_person(client, first: str, email: str, **extra) -> dict:
    return client.create("people", {"name": {"firstName": first, "lastName": "Hopper"},
                                    "emails": {"primaryEmail": email}, **extra})


def test_an_edit_in_twenty_reaches_supabase_and_the_local_db_in_one_run(topology, twenty_store, twenty_client):
    t = topology
    stores = [twenty_store, t.supabase, t.local_db]
    created = _twenty_person(twenty_client, "Grace", "grace@navy.mil", city="Arlington")
    sync_once(t.hub, stores)
    assert [(p["first_name"], p["city"]) for p in people(t.supabase)] == [("Grace", "Arlington")]
    twenty_client.update("people", created["id"], {"city": "New York"})
    sync_once(t.hub, stores)
    assert [p["city"] for p in people(t.supabase)] == ["New York"]
    assert people(t.local_db) == people(t.supabase)
    # our writes to Supabase/local are not captured; nothing comes back to Twenty as a change
    quiet = sync_once(t.hub, stores)
    assert quiet[("resolve", "people")].applied == 0
    assert quiet[("publish", "twenty", "people")].read == 0


def test_an_edit_in_supabase_reaches_twenty_and_echoes_are_suppressed(topology, twenty_store, twenty_client):
    t = topology
    stores = [twenty_store, t.supabase, t.local_db]
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Katherine", email="kj@nasa.gov")
    sync_once(t.hub, stores)
    [record] = list(twenty_client.list("people"))
    assert record["id"] == pid and record["emails"]["primaryEmail"] == "kj@nasa.gov"
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update people set job_title = 'Mathematician' where id = %s", (pid,))
    sync_once(t.hub, stores)
    assert twenty_client.get("people", pid)["jobTitle"] == "Mathematician"
    # Twenty bumped updatedAt on our write; the next poll sees it as an echo, not a new edit
    stats = sync_once(t.hub, stores)
    assert stats[("resolve", "people")].echoes >= 1 and stats[("resolve", "people")].applied == 0
    with t.hub.connect() as conn:
        assert conn.execute("select max(version) as v from sync.golden").fetchone()["v"] == 2


def test_a_person_created_in_supabase_with_an_email_twenty_has_is_linked_not_duplicated(
        topology, twenty_store, twenty_client):
    t = topology
    existing = _twenty_person(twenty_client, "Ada", "ada@example.com")
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Ada", last_name="Lovelace", email="ada@example.com")
    # only Supabase is captured first: the hub knows the record under Supabase's id
    pipeline.capture(t.hub, t.supabase, PEOPLE, "r1", SETTINGS)
    pipeline.resolve(t.hub, PEOPLE, "r1", SETTINGS)
    pipeline.publish(t.hub, twenty_store, PEOPLE, "r1", SETTINGS)
    twenty_people = list(twenty_client.list("people"))
    assert [p["id"] for p in twenty_people] == [existing["id"]]  # upsert matched the e-mail
    assert twenty_people[0]["name"]["lastName"] == "Lovelace"
    assert t.hub.store_ids_for("twenty", "people", [pid]) == {pid: existing["id"]}
    # the next poll recognises Twenty's record as the same person
    sync_once(t.hub, [twenty_store, t.supabase, t.local_db])
    assert set(t.hub.golden_snapshot("people")) == {pid}
    assert len(list(twenty_client.list("people"))) == 1 and len(people(t.local_db)) == 1


def test_both_sides_created_the_same_person_before_any_sync(topology, twenty_store, twenty_client):
    t = topology
    existing = _twenty_person(twenty_client, "Ada", "ada@example.com")
    with psycopg.connect(t.supabase_dsn) as conn:
        pid = insert_person(conn, first_name="Ada", email="ada@example.com")
    sync_once(t.hub, [twenty_store, t.supabase, t.local_db])
    sync_once(t.hub, [twenty_store, t.supabase, t.local_db])
    assert len(list(twenty_client.list("people"))) == 1
    assert len(people(t.supabase)) == 1 and len(people(t.local_db)) == 1
    golden = t.hub.golden_snapshot("people")
    assert len(golden) == 1
    assert set(golden) in ({pid}, {existing["id"]})


def test_a_soft_delete_in_twenty_deletes_everywhere(topology, twenty_store, twenty_client):
    t = topology
    stores = [twenty_store, t.supabase, t.local_db]
    created = _twenty_person(twenty_client, "Temp", "temp@example.com")
    sync_once(t.hub, stores)
    assert len(people(t.local_db)) == 1
    twenty_client.soft_delete("people", created["id"])
    sync_once(t.hub, stores)
    assert people(t.local_db) == [] and people(t.supabase) == []


def test_a_webhook_delivered_four_times_is_applied_once(topology, twenty_store, twenty_client):
    t = topology
    created = _twenty_person(twenty_client, "Hook", "hook@example.com")
    payload = {"eventName": "person.created", "objectMetadata": {"nameSingular": "person"},
               "record": created}
    event = parse_event(payload, received_at=created["updatedAt"])
    stored = [t.hub.enqueue_webhook("twenty", "people", event.event_key, event.record_id, payload)
              for _ in range(4)]
    assert stored == [True, False, False, False]
    stats = pipeline.capture(t.hub, twenty_store, PEOPLE, "r1", SETTINGS)
    assert stats.hints == 1
    resolved = pipeline.resolve(t.hub, PEOPLE, "r1", SETTINGS)
    assert resolved.applied == 1  # the webhook's change; the poll's copy of it is an echo
    with t.hub.connect() as conn:
        outcomes = conn.execute("""select outcome, count(*) as n from sync.record_outcomes
                                   where stage = 'resolve' group by outcome""").fetchall()
    assert {o["outcome"]: o["n"] for o in outcomes} == {"applied": 1, "echo": 1}
    assert len(t.hub.golden_snapshot("people")) == 1


def test_a_webhook_for_a_destroyed_record_becomes_a_delete(topology, twenty_store, twenty_client):
    t = topology
    stores = [twenty_store, t.supabase, t.local_db]
    created = _twenty_person(twenty_client, "Gone", "gone@example.com")
    sync_once(t.hub, stores)
    twenty_client.destroy("people", created["id"])  # a hard delete leaves nothing for polling to see
    payload = {"eventName": "person.destroyed", "record": created}
    event = parse_event(payload, received_at=created["updatedAt"])
    t.hub.enqueue_webhook("twenty", "people", event.event_key, event.record_id, payload)
    sync_once(t.hub, stores)
    assert people(t.supabase) == [] and people(t.local_db) == []


def test_invalid_twenty_record_is_quarantined_with_its_reason(topology, twenty_store, twenty_client):
    t = topology
    twenty_client.create("people", {"name": {"firstName": "", "lastName": "Nameless"},
                                     "emails": {"primaryEmail": "nameless@example.com"}})
    _twenty_person(twenty_client, "Valid", "valid@example.com")
    stats = sync_once(t.hub, [twenty_store, t.supabase, t.local_db])
    assert stats[("capture", "twenty", "people")].quarantined == 1
    assert [p["first_name"] for p in people(t.supabase)] == ["Valid"]
    with t.hub.connect() as conn:
        [row] = conn.execute("select reason from sync.quarantine").fetchall()
    assert row["reason"] == "first_name: required field is missing"


def test_companies_before_people_keep_their_link_in_twenty(topology, twenty_store, twenty_client):
    t = topology
    company_id = str(uuid.uuid4())
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("""insert into companies (id, name, domain_name, ideal_customer_profile)
                        values (%s, 'Acme', 'https://Acme.com/', false)""", (company_id,))
        pid = insert_person(conn, first_name="Wile", company_id=company_id)
    sync_once(t.hub, [twenty_store, t.supabase, t.local_db])
    person = twenty_client.get("people", pid)
    assert person["companyId"] == company_id
    assert twenty_client.get("companies", company_id)["domainName"]["primaryLinkUrl"] == "https://acme.com"


def test_a_person_waits_for_its_company_to_reach_twenty_and_never_loses_the_link(topology, twenty_store,
                                                                                 twenty_client):
    t = topology
    company_id = str(uuid.uuid4())
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("""insert into companies (id, name, domain_name, ideal_customer_profile)
                        values (%s, 'Acme', 'https://acme.com', false)""", (company_id,))
        pid = insert_person(conn, first_name="Wile", company_id=company_id)
    for e in (COMPANIES, PEOPLE):
        pipeline.capture(t.hub, t.local_db, e, "r1", SETTINGS)
        pipeline.resolve(t.hub, e, "r1", SETTINGS)
    # the companies step failed this run (say Twenty was down for it): people are published alone
    stats = pipeline.publish(t.hub, twenty_store, PEOPLE, "r1", SETTINGS)
    assert (stats.applied, stats.errors) == (0, 1) and "waits for company_id" in stats.error_messages[0]
    assert list(twenty_client.list("people")) == []
    sync_once(t.hub, [twenty_store, t.supabase, t.local_db])
    assert twenty_client.get("people", pid)["companyId"] == company_id
    assert [str(p["company_id"]) for p in people(t.supabase)] == [company_id]
    assert [str(p["company_id"]) for p in people(t.local_db)] == [company_id]
    with t.hub.connect() as conn:
        assert conn.execute("select count(*) as n from sync.errors where resolved_at is null").fetchone()["n"] == 0
