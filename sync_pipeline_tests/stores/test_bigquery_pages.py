"""BigQuery publish costs what changed: bounded pages from the hub, statements pruned to a page's keys,
a day-partitioned history that is only appended to (bqemulator and a real hub; no mocks)."""

from __future__ import annotations

import psycopg
import pytest
from google.cloud import bigquery

from sync_pipeline import pipeline
from sync_pipeline.stores.bigquery import BigQueryStore
from sync_pipeline.stores.bigquery.merge import (
    LISTED_KEYS,
    TOMBSTONES_TABLE,
    key_filter,
    publish_script,
    string_literal,
)
from sync_pipeline.stores.bigquery.schema import HISTORY_TABLE, entity_schema
from sync_pipeline.stores.bigquery.spec import BIGQUERY
from sync_pipeline_tests.helpers import SETTINGS, insert_person
from sync_pipeline_tests.stores.test_bigquery import PEOPLE, golden, hub_view, new_id, person, rows

pytestmark = pytest.mark.timeout(180)


def test_publish_streams_the_backlog_in_pages_of_one_load_and_one_merge(
        topology, bigquery_store: BigQueryStore) -> None:
    with psycopg.connect(topology.local_dsn, autocommit=True) as conn:
        ids = {insert_person(conn, first_name=f"Paged{n}") for n in range(25)}
    pipeline.capture(topology.hub, topology.local_db, PEOPLE, "run-1", SETTINGS)
    pipeline.resolve(topology.hub, PEOPLE, "run-1", SETTINGS)

    stats = pipeline.publish(topology.hub, bigquery_store, PEOPLE, "run-1", SETTINGS, batch_size=10)

    assert (stats.batches, stats.read, stats.applied, stats.errors) == (3, 25, 25, 0)
    total = bigquery_store.total_stats
    assert (total.load_jobs, total.merge_statements, total.inserted) == (3, 3, 25)
    assert {r["first_name"] for r in rows(bigquery_store, "people").values()} == {
        f"Paged{n}" for n in range(25)}
    assert len(ids) == 25 and topology.hub.unseen_count("bigquery", "people") == 0
    again = pipeline.publish(topology.hub, bigquery_store, PEOPLE, "run-2", SETTINGS, batch_size=10)
    assert (again.batches, bigquery_store.total_stats.load_jobs) == (0, 3)  # nothing pending, no job


def test_the_default_page_bounds_a_publish() -> None:
    assert 0 < (BIGQUERY.publish_batch_size or 0) <= 50_000


def test_history_is_partitioned_by_day_and_every_table_clustered_by_its_key(
        bigquery_store: BigQueryStore) -> None:
    table = bigquery_store.client.get_table
    history = table(bigquery_store.tables.table_id(HISTORY_TABLE))
    assert history.time_partitioning is not None
    assert (history.time_partitioning.field, history.time_partitioning.type_) == ("synced_at", "DAY")
    assert history.clustering_fields == ["entity", "record_id"]
    tombstones = table(bigquery_store.tables.table_id(TOMBSTONES_TABLE))
    assert tombstones.clustering_fields == ["entity", "record_id"]
    assert table(bigquery_store.tables.table_id("people")).clustering_fields == ["id"]


def test_an_existing_unclustered_target_is_given_its_clustering(bigquery_store: BigQueryStore) -> None:
    client, table_id = bigquery_store.client, bigquery_store.tables.table_id("people")
    client.delete_table(table_id)
    client.create_table(bigquery.Table(table_id, schema=entity_schema(PEOPLE)))  # as made before clustering
    assert not client.get_table(table_id).clustering_fields

    BigQueryStore(client, bigquery_store.dataset_id).install()

    assert client.get_table(table_id).clustering_fields == ["id"]


def test_a_delete_from_a_history_older_than_the_tombstones_still_stops_a_late_upsert(
        bigquery_store: BigQueryStore) -> None:
    deleted, kept = new_id(), new_id()
    bigquery_store.apply(PEOPLE, [golden(PEOPLE, deleted, 1, person(1)), golden(PEOPLE, kept, 1, person(2))])
    bigquery_store.apply(PEOPLE, [golden(PEOPLE, deleted, 3, None)])
    client = bigquery_store.client
    client.delete_table(bigquery_store.tables.table_id(TOMBSTONES_TABLE))  # as a dataset written before them

    upgraded = BigQueryStore(client, bigquery_store.dataset_id)
    upgraded.install()
    late = upgraded.apply(PEOPLE, [golden(PEOPLE, deleted, 2, person(1, city="Late"))])

    assert late.stale == [deleted] and late.applied == []
    assert set(rows(upgraded, "people")) == {kept}
    newer = upgraded.apply(PEOPLE, [golden(PEOPLE, deleted, 4, person(1, city="Back"))])
    assert newer.applied == [deleted] and rows(upgraded, "people")[deleted]["city"] == "Back"


def test_a_page_past_the_listed_keys_is_pruned_by_its_range(bigquery_store: BigQueryStore) -> None:
    ids = [new_id() for _ in range(LISTED_KEYS + 5)]
    first = bigquery_store.apply(PEOPLE, [golden(PEOPLE, i, 1, person(n)) for n, i in enumerate(ids)])
    assert first.stats.inserted == len(ids)
    page = [golden(PEOPLE, i, 2, person(n, city="Lyon")) for n, i in enumerate(ids[1:], start=1)]
    page.append(golden(PEOPLE, ids[0], 2, None))

    second = bigquery_store.apply(PEOPLE, page)

    assert (second.stats.updated, second.stats.deleted, second.stats.inserted, second.stats.stale) == (
        len(ids) - 1, 1, 0, 0)
    assert bigquery_store.compare_with_hub(PEOPLE, hub_view(page)).consistent
    late = bigquery_store.apply(PEOPLE, [golden(PEOPLE, ids[0], 1, person(0))])
    assert late.stale == [ids[0]]  # the delete was remembered in the tombstones


def test_key_filter_lists_a_small_page_and_ranges_a_large_one() -> None:
    assert key_filter("id", ["b", "a", "b"]) == "id IN ('a', 'b')"
    keys = [f"{n:05d}" for n in range(LISTED_KEYS + 1)]
    assert key_filter("id", list(reversed(keys))) == f"id BETWEEN '00000' AND '{keys[-1]}'"
    assert key_filter("id", []) == "FALSE"


def test_string_literals_hold_any_text_exactly(bigquery_store: BigQueryStore) -> None:
    tricky = ["o'brien", "back\\slash", "two\nlines", "\\'", "ok"]
    selected = bigquery_store.tables.run(
        "SELECT " + ", ".join(f"{string_literal(t)} AS v{n}" for n, t in enumerate(tricky)))[0]
    assert [selected[f"v{n}"] for n in range(len(tricky))] == tricky


def test_the_publish_script_only_appends_to_the_history_and_reads_only_the_staged_keys() -> None:
    keys = [new_id(), new_id()]
    script = publish_script(PEOPLE, "p.d.people", "p.d.change_history", "p.d.deleted_records",
                            "p.d._staging", keys)
    listed = key_filter("id", keys)
    assert script.count("p.d.change_history") == 1
    assert "INSERT INTO `p.d.change_history`" in script
    assert f"FROM `p.d.people` WHERE {listed}" in script and f"T.{listed}" in script
    assert "WHERE entity = 'people' AND " + key_filter("record_id", keys) in script
    assert script.count("p.d.people") == 2 and script.count("p.d.deleted_records") == 2
