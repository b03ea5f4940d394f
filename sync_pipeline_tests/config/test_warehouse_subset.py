"""A warehouse that carries only some entities: the configuration says which and in which table, and the
BigQuery store creates, writes and reads only those (against the emulator)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from sync_pipeline.config import DEFAULT_CONFIG_PATH, load_config
from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.canonical import canonical_record, content_hash
from sync_pipeline.model.entities import ENTITIES, entity
from sync_pipeline.sandbox.bigquery_emulator import BigQueryEmulator
from sync_pipeline.stores.bigquery import BigQueryStore
from sync_pipeline.stores.bigquery.schema import warehouse_entities, warehouse_table
from sync_pipeline_tests.fixtures.bigquery import emulator_client

pytestmark = pytest.mark.timeout(120)  # a client retries a broken call for 10 minutes

PEOPLE = entity("people")


def test_the_configuration_names_the_warehouse_entities_and_tables(tmp_path: Path) -> None:
    assert warehouse_entities(load_config(DEFAULT_CONFIG_PATH)) == ENTITIES
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    bigquery_section = text.index("  bigquery:")
    path = tmp_path / "sync.yaml"
    path.write_text(text[:bigquery_section] + "  bigquery:\n    entities:\n      people: {table: contacts}\n",
                    encoding="utf-8")
    config = load_config(path)
    assert warehouse_entities(config) == (PEOPLE,)
    assert warehouse_table(PEOPLE, config) == "contacts"
    assert not config.carries("bigquery", "companies")


@pytest.fixture
def people_only(bigquery_emulator: BigQueryEmulator) -> Iterator[BigQueryStore]:
    client = emulator_client(bigquery_emulator)
    dataset = f"crm_people_only_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        yield BigQueryStore(client, dataset, entities=[PEOPLE])
    finally:
        client.delete_dataset(f"{client.project}.{dataset}", delete_contents=True, not_found_ok=True)
        client.close()


def test_a_warehouse_carrying_only_people_writes_and_reads_only_people(people_only: BigQueryStore) -> None:
    people_only.install()
    dataset = f"{people_only.client.project}.{people_only.dataset_id}"
    tables = {t.table_id for t in people_only.client.list_tables(dataset)}
    assert tables == {"people", "change_history", "deleted_records"}  # the tombstones beside the history

    company_id, person_id = str(uuid.uuid4()), str(uuid.uuid4())
    data = canonical_record(PEOPLE, {"first_name": "Ada", "email": "ada@example.com",
                                     "company_id": company_id})
    record = GoldenRecord(entity="people", record_id=person_id, version=1, data=data, deleted=False,
                          content_hash=content_hash(data), origin_store="twenty",
                          origin_modified_at=datetime(2026, 3, 1, tzinfo=timezone.utc))
    result = people_only.apply(PEOPLE, [record])
    assert result.applied == [person_id]
    assert people_only.rows(PEOPLE) == [{"id": person_id, **data}]
    report = people_only.compare_with_hub(PEOPLE, {person_id: (1, data)})
    assert (report.hub_rows, report.store_rows, report.hub_checksum) == (1, 1, report.store_checksum)
