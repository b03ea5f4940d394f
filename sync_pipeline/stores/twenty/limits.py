"""The values Twenty cannot hold: its currency amounts travel as `amountMicros`, a 64-bit integer
(docs/twenty-api.md §7.1), and its data lives in Postgres, whose text holds no NUL character."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.entities import Entity, FieldType
from sync_pipeline.stores import limits as L

LIMITS = (
    # Every NUMERIC field maps to a CURRENCY in Twenty (mapping.py).
    L.number_range(frozenset({FieldType.NUMERIC}), 6, Decimal(2**63),
                   limit="Twenty's amountMicros (amount x 1e6 must fit a 64-bit signed integer)"),
    L.int64(frozenset({FieldType.INTEGER}), limit="a 64-bit signed integer (Twenty's API)"),
    # Every timestamp Python holds (years 1-9999) is within Postgres' range: only an unreadable one is refused.
    L.timestamp_range(datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc),
                      limit="Twenty's Postgres timestamptz (4713 BC .. 294276 AD)"),
    L.no_nul(store="Twenty (Postgres text)"),
)


def refused_values(entity: Entity, record: GoldenRecord) -> str | None:
    """Why Twenty cannot hold one of the record's values, or None."""
    return L.refused_values(LIMITS, entity, record)
