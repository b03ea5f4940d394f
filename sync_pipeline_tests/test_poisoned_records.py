"""One record a target cannot hold fails alone: it is recorded as a publish error with a reason naming the
limit, and every other record reaches every store in the same run (issue 14, item 1)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg

from sync_pipeline import pipeline
from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.entities import ENTITIES, entity
from sync_pipeline.stores.bigquery import BigQueryStore
from sync_pipeline.stores.bigquery.limits import refused_values as bigquery_refuses
from sync_pipeline.stores.limits import ValueOutOfRange
from sync_pipeline.stores.postgres.limits import refused_values as postgres_refuses
from sync_pipeline.stores.twenty.limits import refused_values as twenty_refuses
from sync_pipeline_tests.helpers import SETTINGS

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


def _sync(hub, sources, targets) -> dict[tuple[str, ...], Any]:
    stats: dict[tuple[str, ...], Any] = {}
    for e in ENTITIES:
        for s in sources:
            pipeline.capture(hub, s, e, "test-run", SETTINGS)
        stats[("resolve", e.name)] = pipeline.resolve(hub, e, "test-run", SETTINGS)
        for s in targets:
            stats[(s.name, e.name)] = pipeline.publish(hub, s, e, "test-run", SETTINGS)
    return stats


def _amounts(store) -> dict[str, Decimal]:
    return {str(r["id"]): Decimal(str(r["amount"])) for r in store.rows(OPPORTUNITIES)}


def _open_publish_errors(hub) -> dict[tuple[str, str], str]:
    with hub.connect() as conn:
        rows = conn.execute("""select store, record_id, message from sync.errors
                               where resolved_at is null and operation = 'publish'""").fetchall()
    return {(r["store"], r["record_id"]): r["message"] for r in rows}


def test_one_poisoned_opportunity_per_target_blocks_no_other(topology, twenty_store, bigquery_store):
    t = topology
    sources, targets = [t.local_db, t.supabase, twenty_store], [t.local_db, t.supabase, twenty_store, bigquery_store]
    with psycopg.connect(t.local_dsn) as conn:
        valid = [_insert_opportunity(conn, f"Deal {n}", "61750") for n in range(5)]
        valid.append(_insert_opportunity(conn, "Far off", "10", close_date="9999-06-30 00:00+00"))
    _sync(t.hub, sources, targets)
    assert _open_publish_errors(t.hub) == {}

    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("update public.opportunities set amount = 4242.42 where id = %s", (valid[0],))
        too_big = _insert_opportunity(conn, "Too big for BigQuery and Twenty", BEYOND_BIGQUERY)
        too_many_micros = _insert_opportunity(conn, "Too many micros for Twenty", BEYOND_TWENTY)
    _sync(t.hub, sources, targets)

    for store in targets:  # every valid opportunity, with its new amount, everywhere, in the same run
        amounts = _amounts(store)
        assert set(valid) <= amounts.keys(), store.name
        assert amounts[valid[0]] == Decimal("4242.42"), store.name
    assert twenty_store.client.get("opportunities", valid[0])["amount"]["amountMicros"] == 4_242_420_000
    assert too_big not in _amounts(bigquery_store) and too_big not in _amounts(twenty_store)
    assert too_many_micros in _amounts(bigquery_store) and too_many_micros not in _amounts(twenty_store)
    assert {too_big, too_many_micros} <= _amounts(t.supabase).keys()  # Postgres holds both
    errors = _open_publish_errors(t.hub)
    assert set(errors) == {("bigquery", too_big), ("twenty", too_big), ("twenty", too_many_micros)}
    assert "beyond BigQuery NUMERIC (|x| < 1e29)" in errors[("bigquery", too_big)]
    assert "amountMicros" in errors[("twenty", too_big)] and "amountMicros" in errors[("twenty", too_many_micros)]

    contents = {s.name: s.rows(OPPORTUNITIES) for s in targets}
    again = _sync(t.hub, sources, targets)
    assert again[("resolve", "opportunities")].applied == 0
    assert all(again[(s.name, "opportunities")].applied == 0 for s in targets)
    assert {s.name: s.rows(OPPORTUNITIES) for s in targets} == contents
    assert set(_open_publish_errors(t.hub)) == set(errors)


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
