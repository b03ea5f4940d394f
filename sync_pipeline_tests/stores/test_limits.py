"""`refusals` tests whole columns first and goes value by value only where a column is not cleared: the
reasons it gives for a batch are exactly those of the per-record test, whatever the mix of values."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.entities import entity
from sync_pipeline.stores.bigquery.limits import LIMITS as BIGQUERY
from sync_pipeline.stores.limits import refusals, refused_values
from sync_pipeline.stores.postgres.limits import LIMITS as POSTGRES

COMPANIES = entity("companies")


def _company(i: int, **data: Any) -> GoldenRecord:
    record = {"name": f"Company {i}", "employees": i, "ideal_customer_profile": False, **data}
    return GoldenRecord("companies", f"c{i}", 1, record, False, "h", "local_db", datetime.now(timezone.utc))


BATCHES = {
    "ordinary": [_company(i) for i in range(50)],
    "one NUL among many": [*(_company(i) for i in range(50)), _company(50, name="Bad\x00name")],
    "an int64 overflow": [_company(0), _company(1, employees=2**63), _company(2, employees=-(2**63) - 1)],
    "ints as strings and bools": [_company(0, employees="12"), _company(1, employees=True),
                                  _company(2, employees="x")],
    "a tombstone": [_company(0), GoldenRecord("companies", "gone", 2, None, True, "d", "local_db",
                                              datetime.now(timezone.utc))],
    "two bad fields, first one named": [_company(0, name="\x00", employees=2**64)],
}


@pytest.mark.parametrize("limits", [POSTGRES, BIGQUERY], ids=["postgres", "bigquery"])
@pytest.mark.parametrize("batch", BATCHES, ids=list(BATCHES))
def test_a_batch_is_refused_exactly_as_its_records_one_by_one(limits, batch):
    records = BATCHES[batch]
    one_by_one = {g.record_id: reason for g in records
                  if (reason := refused_values(limits, COMPANIES, g)) is not None}
    assert {i: str(e) for i, e in refusals(limits, COMPANIES, records).items()} == one_by_one
    if batch == "ordinary":
        assert one_by_one == {}
    if batch == "an int64 overflow":
        assert set(one_by_one) == {"c1", "c2"}
    if limits is POSTGRES and batch == "one NUL among many":  # BigQuery strings hold NUL
        assert list(one_by_one) == ["c50"] and "NUL" in one_by_one["c50"]
    if limits is POSTGRES and batch == "two bad fields, first one named":
        assert one_by_one["c0"].startswith("name ")
