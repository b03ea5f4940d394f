"""One record a target cannot hold fails alone: it is recorded as a publish error with a reason naming the
limit, and every other record reaches every store in the same run (issue 14, item 1)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.entities import entity
from sync_pipeline.stores.bigquery import BigQueryStore
from sync_pipeline.stores.bigquery.limits import refused_values as bigquery_refuses
from sync_pipeline.stores.limits import ValueOutOfRange
from sync_pipeline.stores.postgres.limits import refused_values as postgres_refuses
from sync_pipeline.stores.twenty.limits import refused_values as twenty_refuses
from sync_pipeline_tests.faults.helpers import FourStores, assert_stores_match_hub, sync_all

OPPORTUNITIES = entity("opportunities")
BEYOND_BIGQUERY = "1" + "0" * 30  # and beyond Twenty: amountMicros 1e36
BEYOND_TWENTY = "10000000000000"  # amountMicros 1e19 > 2^63 - 1; BigQuery NUMERIC holds it


def _golden(**data: Any) -> GoldenRecord:
    record = {"name": "Deal", "amount": "100", "currency_code": "USD", "close_date": None, "stage": "NEW",
              "company_id": None, "point_of_contact_id": None, **data}
    return GoldenRecord("opportunities", str(uuid.uuid4()), 1, record, False, "h", "local_db",
                        datetime.now(timezone.utc))


def test_each_store_declares_the_values_it_cannot_hold():
    huge, micros_overflow = _golden(amount=BEYOND_BIGQUERY), _golden(amount=BEYOND_TWENTY)
    nul, far_date = _golden(name="Deal\x00"), _golden(close_date="9999-06-30T00:00:00.000000Z")
    assert bigquery_refuses(OPPORTUNITIES, huge) == "amount 1e+30 is beyond BigQuery NUMERIC (|x| < 1e29)"
    assert bigquery_refuses(OPPORTUNITIES, micros_overflow) is None
    assert "amountMicros" in (twenty_refuses(OPPORTUNITIES, micros_overflow) or "")
    assert twenty_refuses(OPPORTUNITIES, _golden(amount="9223372036854.775807")) is None  # 2^63 - 1 micros
    assert "NUL" in (twenty_refuses(OPPORTUNITIES, nul) or "")
    assert "NUL" in (postgres_refuses(OPPORTUNITIES, nul) or "")
    assert postgres_refuses(OPPORTUNITIES, huge) is None
    for refuses in (bigquery_refuses, twenty_refuses, postgres_refuses):
        assert refuses(OPPORTUNITIES, far_date) is None
    assert bigquery_refuses(entity("companies"), GoldenRecord(
        "companies", "c", 1, {"name": "Big", "employees": 2**63, "ideal_customer_profile": False}, False, "h",
        "local_db", datetime.now(timezone.utc))) == "employees 9.22337e+18 is beyond BigQuery INT64 (a 64-bit signed integer)"


def _insert_opportunity(conn: psycopg.Connection[Any], name: str, amount: str, **values: Any) -> str:
    row = {"id": str(uuid.uuid4()), "name": name, "amount": amount, "currency_code": "USD", "stage": "NEW",
           **values}
    conn.execute(f"insert into public.opportunities ({', '.join(row)}) values ({', '.join(['%s'] * len(row))})",
                 list(row.values()))
    return row["id"]


def _amounts(store) -> dict[str, Decimal | None]:
    return {str(r["id"]): None if r["amount"] is None else Decimal(str(r["amount"]))
            for r in store.rows(OPPORTUNITIES)}


def test_one_poisoned_record_per_target_blocks_no_other(stores: FourStores, topology, twenty_client):
    """Poison for every target at once: amounts past Twenty's amountMicros (1e20) and past BigQuery NUMERIC
    (1e30), a close date in year 9999 (every store holds it) and in year 10000 (none does), NUL characters
    (only Twenty can hold them). Each fails alone, with its reason; every other record, an unrelated edit
    included, reaches every store in the same run, and later runs change nothing."""
    t = stores
    with psycopg.connect(topology.local_dsn) as conn:
        valid = [_insert_opportunity(conn, f"Deal {n}", "61750") for n in range(5)]
        valid.append(_insert_opportunity(conn, "Far off", "10", close_date="9999-06-30 00:00+00"))
    sync_all(t.hub, t.all)

    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("update public.opportunities set amount = 4242.42 where id = %s", (valid[0],))
        beyond_twenty = _insert_opportunity(conn, "Too many micros for Twenty", "1" + "0" * 20)
        beyond_both = _insert_opportunity(conn, "Too big for BigQuery and Twenty", BEYOND_BIGQUERY)
    with psycopg.connect(topology.supabase_dsn) as conn:
        conn.execute("set time zone 'UTC'")
        year_10000 = _insert_opportunity(conn, "Year 10000", "5", close_date="10000-01-01 00:00+00")
        valid.append(_insert_opportunity(conn, "Supabase deal", "7", close_date="9999-12-31 00:00+00"))
    nul_deal = twenty_client.create("opportunities", {"name": "Deal\x00", "stage": "NEW"})["id"]
    nul_person = twenty_client.create("people", {"name": {"firstName": "A\x00da"},
                                                 "emails": {"primaryEmail": "ada@example.com"}})["id"]
    valid.append(twenty_client.create("opportunities", {"name": "Twenty deal", "stage": "NEW"})["id"])
    sync_all(t.hub, t.all)

    for store in t.all:  # every valid opportunity, with its new amount, everywhere, in the same run
        amounts = _amounts(store) if store is not t.twenty else {
            t.hub.id_map("twenty").to_canonical("opportunities", [i]).get(i, i): a
            for i, a in _amounts(store).items()}
        assert set(valid) <= amounts.keys(), store.name
        assert amounts[valid[0]] == Decimal("4242.42"), store.name
    assert twenty_client.get("opportunities", valid[0])["amount"]["amountMicros"] == 4_242_420_000

    quiet = sync_all(t.hub, t.all)  # the refused records are not retried into anything new
    assert quiet[("resolve", "opportunities")].applied == 0
    assert all(quiet[("publish", s.name, "opportunities")].applied == 0 for s in t.all)
    assert_stores_match_hub(t.hub, t.all, held={
        ("twenty", beyond_twenty): "amountMicros",
        ("twenty", beyond_both): "amountMicros",
        ("bigquery", beyond_both): "beyond BigQuery NUMERIC (|x| < 1e29)",
        ("supabase", year_10000): "close_date",
        ("twenty", nul_deal): "NUL character",
        ("twenty", nul_person): "NUL character",
    })


def test_bigquery_finds_the_records_it_refuses_by_splitting_the_batch(bigquery_store):
    """Without the declared limits, BigQuery's own refusal of a value fails the load: the batch is halved until
    the refused records stand alone, each failed with BigQuery's message; the others are written."""
    undeclared = BigQueryStore(bigquery_store.client, bigquery_store.dataset_id, limits=())
    records = [_golden(name=f"Deal {n}", amount=BEYOND_BIGQUERY if n in (2, 5) else "100") for n in range(8)]
    refused = {records[2].record_id, records[5].record_id}

    result = undeclared.apply(OPPORTUNITIES, records)

    assert set(result.failed) == refused
    assert all("decimal" in str(exc).lower() for exc in result.failed.values())
    assert sorted(result.applied) == sorted(g.record_id for g in records if g.record_id not in refused)
    assert _amounts(bigquery_store).keys() == set(result.applied)
    assert undeclared.last_apply_stats.split_batches >= 2

    # The normal path, refusals declared: one load job and one MERGE for the batch.
    more = [_golden(name="Fine"), _golden(name="Too big", amount=BEYOND_BIGQUERY), _golden(name="Also fine")]
    result = bigquery_store.apply(OPPORTUNITIES, more)
    assert list(result.failed) == [more[1].record_id]
    assert isinstance(result.failed[more[1].record_id], ValueOutOfRange)
    stats = bigquery_store.last_apply_stats
    assert (stats.load_jobs, stats.merge_statements, stats.split_batches) == (1, 1, 0)
    assert {more[0].record_id, more[2].record_id} <= _amounts(bigquery_store).keys()


def test_twenty_is_never_sent_a_value_it_cannot_hold(twenty_store, twenty_client):
    records = [_golden(name="Fine"), _golden(name="Nul\x00here"), _golden(name="Micros", amount=BEYOND_TWENTY),
               _golden(name="Also fine", amount="4242.42")]
    result = twenty_store.apply(OPPORTUNITIES, records)
    assert sorted(result.failed) == sorted([records[1].record_id, records[2].record_id])
    assert "NUL character" in str(result.failed[records[1].record_id])
    assert "amountMicros" in str(result.failed[records[2].record_id])
    assert sorted(result.applied) == sorted([records[0].record_id, records[3].record_id])
    assert sorted(r["name"] for r in twenty_client.list("opportunities")) == ["Also fine", "Fine"]
