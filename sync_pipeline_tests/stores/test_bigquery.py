"""BigQueryStore against the bqemulator through the real google-cloud-bigquery client (no mocks)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone
from typing import Any

import dagster as dg
import pytest
from google.cloud import bigquery

from sync_pipeline.defs.bigquery_resource import BigQueryStoreResource
from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.canonical import canonical_record, content_hash
from sync_pipeline.model.entities import ENTITIES, Entity, Field, FieldType, entity
from sync_pipeline.sandbox.bigquery_emulator import BigQueryEmulator
from sync_pipeline.reporting.sync_log import install_sync_log, merge_sync_log
from sync_pipeline.stores.bigquery import BigQueryStore, SchemaMismatchError, row_digest, sql_row_text

pytestmark = pytest.mark.timeout(120)  # a client retries a broken call for 10 minutes

PEOPLE = entity("people")
COMPANIES = entity("companies")
OPPORTUNITIES = entity("opportunities")
MODIFIED_AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def golden(ent: Entity, record_id: str, version: int, raw: dict[str, Any] | None) -> GoldenRecord:
    data = None if raw is None else canonical_record(ent, raw)
    return GoldenRecord(
        entity=ent.name,
        record_id=record_id,
        version=version,
        data=data,
        deleted=data is None,
        content_hash=content_hash(data),
        origin_store="twenty",
        origin_modified_at=MODIFIED_AT,
    )


def person(n: int, **changes: Any) -> dict[str, Any]:
    return {"first_name": f"Ada{n}", "last_name": "Lovelace", "email": f"ada{n}@example.com", **changes}


def new_id() -> str:
    return str(uuid.uuid4())


def rows(store: BigQueryStore, table: str) -> dict[str, dict[str, Any]]:
    result = store.client.query(f"SELECT * FROM `{store.client.project}.{store.dataset_id}.{table}`").result()
    return {row["id"]: dict(row.items()) for row in result}


def history(store: BigQueryStore) -> list[tuple[str, int, str]]:
    result = store.client.query(
        f"SELECT record_id, version, op FROM `{store.client.project}.{store.dataset_id}.change_history`"
        " ORDER BY record_id, version"
    ).result()
    return [(r["record_id"], r["version"], r["op"]) for r in result]


def hub_view(records: list[GoldenRecord]) -> dict[str, tuple[int, dict[str, Any] | None]]:
    return {r.record_id: (r.version, r.data) for r in records}


def test_insert_update_delete_in_one_apply_with_one_load_and_one_merge(bigquery_store: BigQueryStore) -> None:
    a, b, c = new_id(), new_id(), new_id()
    bigquery_store.apply(PEOPLE, [golden(PEOPLE, a, 1, person(1)), golden(PEOPLE, b, 1, person(2))])

    result = bigquery_store.apply(
        PEOPLE,
        [
            golden(PEOPLE, a, 2, person(1, job_title="CTO")),
            golden(PEOPLE, b, 2, None),
            golden(PEOPLE, c, 1, person(3)),
            golden(PEOPLE, c, 1, person(3)),  # a duplicate in the batch is dropped before the MERGE
        ],
    )

    stats = result.stats
    assert (stats.load_jobs, stats.merge_statements, stats.dml_statements) == (1, 1, 3)
    assert (stats.inserted, stats.updated, stats.deleted, stats.stale) == (1, 1, 1, 0)
    assert stats.duplicates_dropped == 1
    assert sorted(result.applied) == sorted([a, b, c]) and result.stale == []
    table = rows(bigquery_store, "people")
    assert set(table) == {a, c}
    assert table[a]["job_title"] == "CTO" and table[a]["hub_version"] == 2
    assert table[a]["origin_store"] == "twenty" and table[a]["origin_modified_at"] == MODIFIED_AT
    assert table[c]["email"] == "ada3@example.com" and table[c]["synced_at"] is not None
    assert history(bigquery_store) == sorted(
        [(a, 1, "insert"), (b, 1, "insert"), (a, 2, "update"), (b, 2, "delete"), (c, 1, "insert")]
    )


def test_replayed_apply_changes_nothing(bigquery_store: BigQueryStore) -> None:
    batch = [golden(PEOPLE, new_id(), 1, person(n)) for n in range(5)]
    batch.append(golden(PEOPLE, batch[0].record_id, 2, None))  # the delete wins over its own insert
    first = bigquery_store.apply(PEOPLE, batch)
    assert (first.stats.inserted, first.stats.already_absent) == (4, 1)
    report_before = bigquery_store.compare_with_hub(PEOPLE, hub_view(batch[1:]))
    history_before = history(bigquery_store)

    replay = bigquery_store.apply(PEOPLE, batch)

    assert (replay.stats.inserted, replay.stats.updated, replay.stats.deleted) == (0, 0, 0)
    assert replay.stats.stale == 4 and replay.stats.history_rows == 0
    assert sorted(replay.stale) == sorted(r.record_id for r in batch[1:5])
    report_after = bigquery_store.compare_with_hub(PEOPLE, hub_view(batch[1:]))
    assert report_after.consistent and report_before.consistent
    assert (report_after.store_rows, report_after.store_checksum) == (4, report_before.store_checksum)
    assert history(bigquery_store) == history_before


def test_older_version_never_overwrites_or_resurrects(bigquery_store: BigQueryStore) -> None:
    kept, deleted = new_id(), new_id()
    bigquery_store.apply(PEOPLE, [golden(PEOPLE, kept, 3, person(1, city="Paris")),
                                  golden(PEOPLE, deleted, 1, person(2))])
    bigquery_store.apply(PEOPLE, [golden(PEOPLE, deleted, 3, None)])

    late = bigquery_store.apply(
        PEOPLE, [golden(PEOPLE, kept, 2, person(1, city="Berlin")), golden(PEOPLE, deleted, 2, person(2))]
    )

    assert sorted(late.stale) == sorted([kept, deleted]) and late.applied == []
    table = rows(bigquery_store, "people")
    assert set(table) == {kept}
    assert (table[kept]["city"], table[kept]["hub_version"]) == ("Paris", 3)


def test_history_grows_by_exactly_the_changes(bigquery_store: BigQueryStore) -> None:
    ids = [new_id() for _ in range(6)]
    bigquery_store.apply(PEOPLE, [golden(PEOPLE, i, 1, person(n)) for n, i in enumerate(ids)])
    before = len(history(bigquery_store))

    result = bigquery_store.apply(
        PEOPLE,
        [golden(PEOPLE, ids[0], 2, person(0, phone="+33 1")),  # update
         golden(PEOPLE, ids[1], 2, None),  # delete
         golden(PEOPLE, ids[2], 1, person(2)),  # stale
         golden(PEOPLE, new_id(), 1, person(9))],  # insert
    )

    changes = result.stats.inserted + result.stats.updated + result.stats.deleted
    assert changes == 3 and result.stats.history_rows == 3
    assert len(history(bigquery_store)) == before + changes


TRICKY_COMPANIES = [
    {"name": "Fractions", "annual_recurring_revenue": "1234.5", "employees": 12,
     "ideal_customer_profile": True},
    {"name": "Négative | pipe", "annual_recurring_revenue": "-0.000000001", "employees": -3,
     "ideal_customer_profile": False},
    {"name": "Nulls", "ideal_customer_profile": False},
    {"name": "Big", "annual_recurring_revenue": "98765432109.999999999", "employees": 9007199254740993,
     "ideal_customer_profile": True, "address_city": "Zürich 😀"},
    {"name": "Rounded on load", "annual_recurring_revenue": "1.0000000005", "ideal_customer_profile": True},
    {"name": "", "annual_recurring_revenue": "-7", "currency_code": "EUR", "ideal_customer_profile": True},
]
ROUNDED_ON_LOAD = {"Rounded on load": {"annual_recurring_revenue": "1.000000001"}}
TRICKY_OPPORTUNITIES = [
    {"name": "Micro", "stage": "NEW", "close_date": "2026-01-01T00:00:03.500001Z", "amount": "0.1"},
    {"name": "Offset", "stage": "CUSTOMER", "close_date": "2026-06-30T23:59:59.999999+02:00",
     "amount": "-12.30"},
    {"name": "Epoch", "stage": "MEETING", "close_date": "1970-01-01T00:00:00Z"},
    {"name": "Nothing", "stage": "PROPOSAL"},
]


def test_warehouse_digest_matches_python_on_tricky_values(bigquery_store: BigQueryStore) -> None:
    for ent, raws in ((COMPANIES, TRICKY_COMPANIES), (OPPORTUNITIES, TRICKY_OPPORTUNITIES)):
        records = [golden(ent, new_id(), n + 1, raw) for n, raw in enumerate(raws)]
        bigquery_store.apply(ent, records)

        # The per-row digests computed by BigQuery equal Python's, row by row.
        store = bigquery_store
        digests = store.tables.run(  # the same SQL compare_with_hub runs when totals differ
            f"SELECT id, TO_HEX(SHA256({sql_row_text(ent)})) AS h FROM `{store.tables.table_id(ent.name)}`"
        )
        expected = {r.record_id: row_digest(ent, r.record_id, r.version, r.data) for r in records}
        assert {row["id"]: row["h"] for row in digests} == expected
        assert store.compare_with_hub(ent, hub_view(records)).consistent
        # inventory hashes what it reads back; NUMERIC keeps 9 fractional digits (rounded half away from 0)
        stored = {r.record_id: canonical_record(ent, {**r.data, **ROUNDED_ON_LOAD.get(r.data["name"], {})})
                  for r in records}
        assert store.inventory(ent) == {rid: content_hash(data) for rid, data in stored.items()}


def test_compare_with_hub_finds_rows_changed_behind_the_syncs_back(bigquery_store: BigQueryStore) -> None:
    records = [golden(PEOPLE, new_id(), 1, person(n)) for n in range(4)]
    bigquery_store.apply(PEOPLE, records)
    changed, removed = records[0].record_id, records[1].record_id
    extra, deleted_in_hub = new_id(), records[2].record_id
    table = f"`{bigquery_store.tables.table_id('people')}`"
    params = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("changed", "STRING", changed),
        bigquery.ScalarQueryParameter("removed", "STRING", removed),
        bigquery.ScalarQueryParameter("extra", "STRING", extra),
    ])
    for statement in (  # one job each: bqemulator drops the parameters of multi-statement scripts
        f"UPDATE {table} SET job_title = 'edited by hand' WHERE id = @changed",
        f"DELETE FROM {table} WHERE id = @removed",
        f"INSERT INTO {table} (id, first_name, email, hub_version) VALUES (@extra, 'X', 'x@example.com', 1)",
    ):
        bigquery_store.client.query(statement, job_config=params).result()
    hub = hub_view(records)
    hub[deleted_in_hub] = (2, None)  # deleted in the hub, still in BigQuery: extra too

    report = bigquery_store.compare_with_hub(PEOPLE, hub)

    assert not report.consistent
    assert (report.hub_rows, report.store_rows) == (3, 4)
    assert report.mismatched == [changed]
    assert report.missing == [removed]
    assert report.extra == sorted([extra, deleted_in_hub])


def test_new_registry_column_is_added_and_type_change_is_refused(bigquery_store: BigQueryStore) -> None:
    with_nickname = dataclasses.replace(PEOPLE, fields=PEOPLE.fields + (Field("nickname", FieldType.TEXT),))
    grown = BigQueryStore(bigquery_store.client, bigquery_store.dataset_id,
                          entities=[with_nickname if e.name == "people" else e for e in ENTITIES])
    grown.install()
    grown.install()  # idempotent

    columns = {f.name: f.field_type for f in grown.client.get_table(grown.tables.table_id("people")).schema}
    assert columns["nickname"] == "STRING"
    rid = new_id()
    grown.apply(with_nickname, [golden(with_nickname, rid, 1, person(1, nickname="Ada"))])
    assert rows(grown, "people")[rid]["nickname"] == "Ada"
    hub = {rid: (1, canonical_record(with_nickname, person(1, nickname="Ada")))}
    assert grown.compare_with_hub(with_nickname, hub).consistent

    retyped = dataclasses.replace(
        COMPANIES,
        fields=tuple(dataclasses.replace(f, type=FieldType.NUMERIC) if f.name == "employees" else f
                     for f in COMPANIES.fields),
    )
    wrong = BigQueryStore(bigquery_store.client, bigquery_store.dataset_id,
                          entities=[retyped if e.name == "companies" else e for e in ENTITIES])
    with pytest.raises(SchemaMismatchError) as error:
        wrong.install()
    assert (error.value.table, error.value.column, error.value.found, error.value.expected) == (
        "companies", "employees", "INT64", "NUMERIC")
    assert "companies" in str(error.value) and "employees" in str(error.value)


def test_sync_log_export_is_idempotent(bigquery_store: BigQueryStore) -> None:
    tables = bigquery_store.tables
    install_sync_log(tables)
    run_id = new_id()
    runs = [{"run_id": run_id, "started_at": MODIFIED_AT, "finished_at": None, "status": "STARTED",
             "trigger": "schedule", "counts": {}}]
    outcomes = [{"run_id": run_id, "store": "bigquery", "entity": "people", "record_id": new_id(),
                 "stage": "publish", "outcome": "applied", "version": n, "detail": None, "at": MODIFIED_AT}
                for n in range(3)]
    conflicts = [{"id": new_id(), "entity": "people", "record_id": new_id(), "detected_at": MODIFIED_AT,
                  "run_id": run_id, "incoming_store": "supabase", "golden_store": "twenty",
                  "winner_store": "twenty",
                  "resolution": "last_write_wins", "winning_version": 4,
                  "differing_fields": ["city", "phone"],
                  "golden_side": {"city": "Paris"}, "incoming_side": {"city": "Lyon"}}]

    assert merge_sync_log(tables, runs, outcomes, conflicts) == {
        "sync_runs": 1, "sync_record_outcomes": 3, "sync_conflicts": 1}
    assert merge_sync_log(tables, runs, outcomes, conflicts) == {
        "sync_runs": 0, "sync_record_outcomes": 0, "sync_conflicts": 0}

    finished = [{**runs[0], "finished_at": MODIFIED_AT, "status": "SUCCESS", "counts": {"applied": 3}}]
    assert merge_sync_log(tables, finished, outcomes, [])["sync_runs"] == 1
    run_rows = tables.run(f"SELECT status, counts FROM `{tables.table_id('sync_runs')}`")
    assert [(r["status"], r["counts"]) for r in run_rows] == [("SUCCESS", '{"applied":3}')]
    conflict_rows = tables.run(
        f"SELECT differing_fields, golden_side FROM `{tables.table_id('sync_conflicts')}`")
    assert [(list(r["differing_fields"]), r["golden_side"]) for r in conflict_rows] == [
        (["city", "phone"], '{"city":"Paris"}')]
    outcome_count = tables.run(
        f"SELECT COUNT(*) AS n FROM `{tables.table_id('sync_record_outcomes')}`")[0]["n"]
    assert outcome_count == 3


def test_check_reports_health(bigquery_store: BigQueryStore) -> None:
    assert bigquery_store.check().ok
    missing = BigQueryStore(bigquery_store.client, "no_such_dataset").check()
    assert not missing.ok and "no_such_dataset" in missing.message


def test_resource_works_inside_dagster_materialize(bigquery_emulator: BigQueryEmulator) -> None:
    dataset = f"crm_sync_resource_{uuid.uuid4().hex[:8]}"
    record_id = new_id()

    @dg.asset
    def people_in_bigquery(bigquery: BigQueryStoreResource) -> dg.MaterializeResult:
        store = bigquery.store(hub=None)  # BigQuery keeps canonical ids: no id map needed
        result = store.apply(PEOPLE, [golden(PEOPLE, record_id, 1, person(1))])
        health = store.check()
        return dg.MaterializeResult(metadata={"applied": len(result.applied), "healthy": health.ok,
                                              "load_jobs": result.stats.load_jobs})

    resource = BigQueryStoreResource(
        project=bigquery_emulator.project, api_endpoint=bigquery_emulator.endpoint, dataset=dataset
    )
    outcome = dg.materialize([people_in_bigquery], resources={"bigquery": resource})

    assert outcome.success
    metadata = outcome.asset_materializations_for_node("people_in_bigquery")[0].metadata
    assert (metadata["applied"].value, metadata["healthy"].value, metadata["load_jobs"].value) == (1, True, 1)
    with resource.get_client() as client:
        store = BigQueryStore(client, dataset)
        assert set(rows(store, "people")) == {record_id}
        client.delete_dataset(f"{client.project}.{dataset}", delete_contents=True)
