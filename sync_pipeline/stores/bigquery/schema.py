"""The warehouse's column types and the schemas of the tables the store writes.

Types are compared in standard SQL names, because the REST API reports legacy ones: a column is only ever
added, never coerced, so a type mismatch is an error for a person to resolve.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from google.cloud import bigquery

from sync_pipeline.config import SyncConfig, active_config
from sync_pipeline.model.entities import Entity, FieldType

SF = bigquery.SchemaField

# BigQuery type of each canonical field type.
BQ_TYPES: dict[FieldType, str] = {
    FieldType.UUID: "STRING",
    FieldType.TEXT: "STRING",
    FieldType.URL: "STRING",
    FieldType.EMAIL: "STRING",
    FieldType.ENUM: "STRING",
    FieldType.INTEGER: "INT64",
    FieldType.NUMERIC: "NUMERIC",
    FieldType.BOOLEAN: "BOOL",
    FieldType.TIMESTAMP: "TIMESTAMP",
}
# The REST API reports legacy type names; compare in standard SQL names.
_TYPE_ALIASES = {"INTEGER": "INT64", "BOOLEAN": "BOOL", "FLOAT": "FLOAT64", "DECIMAL": "NUMERIC"}

SYNC_COLUMNS = (
    SF("hub_version", "INT64", mode="REQUIRED"),
    SF("origin_store", "STRING"),
    SF("origin_modified_at", "TIMESTAMP"),
    SF("synced_at", "TIMESTAMP"),
)
HISTORY_TABLE = "change_history"
HISTORY_SCHEMA = (
    SF("entity", "STRING", mode="REQUIRED"),
    SF("record_id", "STRING", mode="REQUIRED"),
    SF("version", "INT64", mode="REQUIRED"),
    SF("op", "STRING", mode="REQUIRED", description="insert, update or delete"),
    SF("origin_store", "STRING"),
    SF("origin_modified_at", "TIMESTAMP"),
    SF("synced_at", "TIMESTAMP", mode="REQUIRED"),
)
# The last delete of each record, so that a publish finds it by key instead of reading the history.
TOMBSTONES_SCHEMA = (
    SF("entity", "STRING", mode="REQUIRED"),
    SF("record_id", "STRING", mode="REQUIRED"),
    SF("version", "INT64", mode="REQUIRED", description="The hub version that deleted the record"),
)

_NUMERIC_QUANTUM = Decimal(1).scaleb(-9)  # BigQuery NUMERIC keeps 9 fractional digits


class SchemaMismatchError(RuntimeError):
    """An existing BigQuery column has a type other than the one the registry defines."""

    def __init__(self, table: str, column: str, found: str, expected: str) -> None:
        super().__init__(
            f"BigQuery table {table!r}: column {column!r} is {found}, the registry expects {expected}; "
            "refusing to coerce it (migrate the column by hand)"
        )
        self.table, self.column, self.found, self.expected = table, column, found, expected


def warehouse_entities(config: SyncConfig | None = None) -> tuple[Entity, ...]:
    """The entities the sync configuration (the active one by default) puts in the warehouse, in
    dependency order."""
    config = config or active_config()
    return tuple(e for e in config.entities if config.carries("bigquery", e.name))


def warehouse_table(entity: Entity, config: SyncConfig | None = None) -> str:
    """The entity's current-state table: the configured one, else the entity's name."""
    return (config or active_config()).warehouse_table(entity.name) or entity.name


def entity_schema(entity: Entity) -> list[bigquery.SchemaField]:
    """An entity's current-state table: the canonical id and fields, then what the sync knows of the row."""
    return [
        SF("id", "STRING", mode="REQUIRED"),
        # None is sent as a null description; the stubs leave None out although the API takes it.
        *(SF(f.name, BQ_TYPES[f.type], description=f.description or None)  # type: ignore[arg-type]
          for f in entity.fields),
        *SYNC_COLUMNS,
    ]


def staging_schema(entity: Entity) -> list[bigquery.SchemaField]:
    """The entity's columns plus the tombstone flag; the run's values ride along as columns too."""
    return [
        *entity_schema(entity),
        SF("deleted", "BOOL", mode="REQUIRED"),
        SF("entity", "STRING", mode="REQUIRED"),
    ]


def ddl_type(column: bigquery.SchemaField) -> str:
    """The column's type as DDL spells it, in standard SQL names, whatever name the API reported."""
    base = _TYPE_ALIASES.get(column.field_type.upper(), column.field_type.upper())
    return f"ARRAY<{base}>" if column.mode == "REPEATED" else base


def bq_numeric(value: Any) -> Decimal:
    """A value as BigQuery NUMERIC stores it (9 fractional digits, half away from zero). Rounded with as
    many digits as the value needs: the default 28 fail on any value from 1e19 up."""
    number = Decimal(str(value))
    digits = max(number.adjusted(), 0) + 2 + 9 if number.is_finite() else 28  # +1: rounding may carry
    return number.quantize(_NUMERIC_QUANTUM, rounding=ROUND_HALF_UP, context=Context(prec=max(digits, 28)))
