"""A plan before writing (issue 11, part 4): on a topology like the sandbox's (both Postgres stores with the
hub in the local DB, the Twenty stand-in, the BigQuery emulator) with edits pending in every source, the plan
changes nothing in any store or in the hub, and its counts are what the next real sync then applies."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from sync_pipeline import pipeline
from sync_pipeline.planning import SyncPlan, plan_sync, print_plan
from sync_pipeline.model.entities import ENTITIES, entity
from sync_pipeline.stores.registry import STORES
from sync_pipeline_tests.fixtures.bigquery import emulator_client
from sync_pipeline_tests.helpers import SETTINGS, insert_person

PEOPLE = entity("people")


@pytest.fixture
def four(topology, twenty_store, bigquery_store) -> dict[str, Any]:
    return {"local_db": topology.local_db, "supabase": topology.supabase, "twenty": twenty_store,
            "bigquery": bigquery_store}


def _sources(stores: dict[str, Any]) -> list[Any]:
    return [stores[s.key] for s in STORES if s.captures]


def _targets(stores: dict[str, Any]) -> list[Any]:
    return [stores[s.key] for s in STORES if s.publishes]


def _real_sync(hub, stores: dict[str, Any], run_id: str) -> dict[Any, Any]:
    """What the sync job does, in the plan's order: per entity, capture every source, resolve, publish."""
    stats: dict[Any, Any] = {}
    for e in ENTITIES:
        for source in _sources(stores):
            stats[("capture", source.name, e.name)] = pipeline.capture(hub, source, e, run_id, SETTINGS)
        stats[("resolve", e.name)] = pipeline.resolve(hub, e, run_id, SETTINGS)
        for target in _targets(stores):
            stats[("publish", target.name, e.name)] = pipeline.publish(hub, target, e, run_id, SETTINGS)
    return stats


def _dump(topology, twenty_client, bigquery_emulator, bigquery_store) -> dict[Any, list[str]]:
    """Every row of every table of both Postgres databases (the app tables, the change logs, the hub's `sync`
    schema), every Twenty record (soft-deleted ones too) and every BigQuery table's rows."""
    out: dict[Any, list[str]] = {}
    for name, dsn in (("local", topology.local_dsn), ("supabase", topology.supabase_dsn)):
        with psycopg.connect(dsn) as conn:
            tables = conn.execute(
                """select table_schema, table_name from information_schema.tables
                   where table_type = 'BASE TABLE'
                     and table_schema not in ('pg_catalog', 'information_schema')"""
            ).fetchall()
            for schema, table in tables:
                query = sql.SQL("select * from {}").format(sql.Identifier(schema, table))
                rows = conn.execute(query).fetchall()
                out[(name, schema, table)] = sorted(map(repr, rows))
    assert ("local", "sync", "golden") in out and ("supabase", "sync_cdc", "change_log") in out
    for e in ENTITIES:
        records = [*twenty_client.list(e.name), *twenty_client.list(e.name, filter="deletedAt[is]:NOT_NULL")]
        out[("twenty", e.name)] = sorted(map(repr, records))
    client = emulator_client(bigquery_emulator)
    for table in client.list_tables(bigquery_store.dataset_id):
        rows = client.query(f"select * from `{table.project}.{table.dataset_id}.{table.table_id}`").result()
        out[("bigquery", table.table_id)] = sorted(repr(sorted(dict(r.items()).items())) for r in rows)
    client.close()
    return out


def _contents(stores: dict[str, Any]) -> dict[tuple[str, str], dict[str, str]]:
    return {(name, e.name): {str(r["id"]): repr(sorted(r.items())) for r in store.rows(e)}
            for name, store in stores.items() for e in ENTITIES}


def _applied(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    return {"insert": len(after.keys() - before.keys()), "delete": len(before.keys() - after.keys()),
            "update": sum(1 for i in before.keys() & after.keys() if before[i] != after[i])}


def _pending_edits_everywhere(topology, twenty_client, ids: dict[str, str]) -> None:
    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn, first_name="Local", email="local.new@example.com")
        conn.execute("update public.people set job_title = 'Local title' where id = %s", (ids["shared"],))
        conn.execute("delete from public.people where id = %s", (ids["doomed"],))
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("update public.people set job_title = 'Supabase title' where id = %s", (ids["shared"],))
        conn.execute("update public.people set city = 'Lyon' where id = %s", (ids["quiet"],))
        insert_person(conn, first_name="Broken", email="not-an-email")
        insert_person(conn, first_name="Twice", email="twice@example.com")
    twenty_client.update("people", ids["twenty"], {"city": "Oslo"})
    twenty_client.create("people", {"name": {"firstName": "Twice"},
                                    "emails": {"primaryEmail": "twice@example.com"}})
    twenty_client.create("companies", {"name": "Initech"})


@pytest.mark.timeout(600)
def test_the_plan_changes_nothing_and_counts_what_the_next_sync_applies(topology, four, twenty_client,
                                                                        bigquery_emulator, bigquery_store):
    hub = topology.hub
    twenty_client.create("companies", {"name": "Acme"})
    twenty_person = twenty_client.create("people", {"name": {"firstName": "Tove"},
                                                    "emails": {"primaryEmail": "tove@example.com"}})
    with psycopg.connect(topology.local_dsn) as conn:
        ids = {"shared": insert_person(conn, email="shared@example.com"),
               "doomed": insert_person(conn, email="doomed@example.com"),
               "quiet": insert_person(conn, email="quiet@example.com")}
    ids["twenty"] = twenty_person["id"]
    _real_sync(hub, four, "baseline")
    _pending_edits_everywhere(topology, twenty_client, ids)
    before = _dump(topology, twenty_client, bigquery_emulator, bigquery_store)

    plan = plan_sync(hub, [four[s.key] for s in STORES], SETTINGS)

    assert _dump(topology, twenty_client, bigquery_emulator, bigquery_store) == before
    assert plan.failures == []
    contents = _contents(four)
    stats = _real_sync(hub, four, "after-plan")
    after = _contents(four)
    for key, counts in plan.counts.items():
        expected = {name: counts[name] for name in ("insert", "update", "delete")}
        assert _applied(contents[key], after[key]) == expected, key
    for (store, e), counts in plan.counts.items():  # what publishing applied, store by store
        if ("publish", store, e) in stats:
            written = counts["insert"] + counts["update"] + counts["delete"]
            assert stats[("publish", store, e)].applied == written, (store, e)
    _assert_the_plan_names_what_the_sync_did(hub, plan, stats)


def _assert_the_plan_names_what_the_sync_did(hub, plan: SyncPlan, stats: dict[Any, Any]) -> None:
    with hub.connect() as conn:
        conflicts = conn.execute("""select record_id::text as record_id, winner_store from sync.conflicts
                                    where run_id = 'after-plan'""").fetchall()
    assert conflicts and sorted((c["record_id"], c["winner_store"]) for c in conflicts) == sorted(
        (c["record_id"], c["winner_store"]) for c in plan.conflicts)
    quarantined = sum(s.quarantined for key, s in stats.items() if key[0] in ("capture", "resolve"))
    assert quarantined == len(plan.quarantined) == sum(c["quarantine"] for c in plan.counts.values()) >= 1
    assert any("not-an-email" in (q["reason"] or "") for q in plan.quarantined)
    # Twenty's new person is captured first; Supabase's, with the same e-mail, is linked to it.
    assert [(link["store"], link["entity"]) for link in plan.links] == [("supabase", "people")]
    assert plan.counts[("bigquery", "people")]["delete"] == 1
    lines: list[str] = []
    print_plan(plan, lines.append)
    text = "\n".join(lines)
    assert "Records it would link by natural key" in text and "linked by natural key" in text
    assert "not-an-email" in text


def test_the_sync_plan_job_shows_the_plan_as_metadata_and_writes_nothing(topology, four_stores,
                                                                          twenty_client):
    with psycopg.connect(topology.local_dsn) as conn:
        insert_person(conn, email="planned@example.com")
        before = conn.execute("select count(*) from sync.inbox").fetchone()

    result = four_stores.defs.resolve_job_def("sync_plan").execute_in_process()

    [materialization] = result.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["total_insert"].value == 3  # the new person, in Supabase, Twenty and BigQuery
    assert "| local_db | people |" in metadata["plan"].value
    assert metadata["needs_confirmation"].value == "no"
    with psycopg.connect(topology.local_dsn) as conn:
        assert conn.execute("select count(*) from sync.inbox").fetchone() == before
        assert conn.execute("select count(*) from sync.cursors").fetchone() == (0,)
