"""The values a Postgres store's columns cannot hold (ddl.PG_TYPES): no NUL in text, int8 integers,
numeric up to 131,072 digits before the point, timestamptz from 4713 BC to 294276 AD."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.entities import Entity, FieldType
from sync_pipeline.stores import limits as L

LIMITS = (
    L.no_nul(store="Postgres text"),
    L.int64(frozenset({FieldType.INTEGER}), limit="Postgres int8 (a 64-bit signed integer)"),
    L.number_range(frozenset({FieldType.NUMERIC}), 0, Decimal("1e131072"),
                   limit="Postgres numeric (131,072 digits before the decimal point)"),
    # Every timestamp Python holds (years 1-9999) is within Postgres' range: only an unreadable one is refused.
    L.timestamp_range(datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc),
                      limit="Postgres timestamptz (4713 BC .. 294276 AD)"),
)


def refused_values(entity: Entity, record: GoldenRecord) -> str | None:
    """Why a Postgres store cannot hold one of the record's values, or None."""
    return L.refused_values(LIMITS, entity, record)
