"""The values BigQuery's column types cannot hold (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.entities import Entity, FieldType
from sync_pipeline.stores import limits as L

LIMITS = (
    # NUMERIC: precision 38, scale 9; a value is rounded to 9 decimals first, as the load does.
    L.number_range(frozenset({FieldType.NUMERIC}), 0, Decimal("1e29"), quantum=Decimal("1e-9"),
                   limit="BigQuery NUMERIC (|x| < 1e29)"),
    L.timestamp_range(datetime(1, 1, 1, tzinfo=timezone.utc),
                      datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
                      limit="BigQuery TIMESTAMP (0001-01-01 .. 9999-12-31 23:59:59.999999 UTC)"),
    L.int64(frozenset({FieldType.INTEGER}), limit="BigQuery INT64 (a 64-bit signed integer)"),
)


def refused_values(entity: Entity, record: GoldenRecord) -> str | None:
    """Why BigQuery cannot hold one of the record's values, or None."""
    return L.refused_values(LIMITS, entity, record)
