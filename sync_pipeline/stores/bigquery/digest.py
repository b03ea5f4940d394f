"""The row digest, computed identically by the warehouse (SQL text) and by Python.

Comparing the warehouse with the hub must not read every row back: both sides hash each row's explicitly
formatted columns and fold the hashes into one XOR checksum, and only a difference fetches per-row
digests. That works only if both sides format every type the same way, so each type's SQL and Python
encodings sit together in one table below; a type without an entry has no digest at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sync_pipeline.model.canonical import format_timestamp, parse_timestamp
from sync_pipeline.model.entities import Entity
from sync_pipeline.stores.bigquery.schema import BQ_TYPES, bq_numeric

_TIMESTAMP_FORMAT = "%FT%H:%M:%E6SZ"  # what `format_timestamp` writes: microseconds, UTC, `Z`
_NULL_TOKEN = "~"  # never produced by an encoded non-null value
_SEPARATOR = "|"
_CHECKSUM_HEX_DIGITS = 15  # 60 bits: always a positive INT64, so BIT_XOR cannot overflow


@dataclass(frozen=True)
class _Encoding:
    """One BigQuery type's text form: `sql` of a (quoted) column, `py` of a non-null Python value."""

    sql: Callable[[str], str]
    py: Callable[[Any], str]


def _py_numeric(value: Any) -> str:
    number = bq_numeric(value)
    whole = int(number)  # truncates toward zero, like TRUNC
    return f"{whole}:{int((number - whole).scaleb(9))}"


# Formatted explicitly, never by a default cast, so that the emulator and BigQuery render values alike.
_ENCODINGS: dict[str, _Encoding] = {
    "STRING": _Encoding(  # length-prefixed so that separators inside values cannot collide
        sql=lambda col: f"CONCAT(CAST(CHAR_LENGTH({col}) AS STRING), ':', {col})",
        py=lambda value: f"{len(value)}:{value}",
    ),
    "INT64": _Encoding(
        sql=lambda col: f"CAST({col} AS STRING)",
        py=lambda value: str(int(value)),
    ),
    "BOOL": _Encoding(
        sql=lambda col: f"IF({col}, 't', 'f')",
        py=lambda value: "t" if value else "f",
    ),
    "TIMESTAMP": _Encoding(
        sql=lambda col: f"FORMAT_TIMESTAMP('{_TIMESTAMP_FORMAT}', {col}, 'UTC')",
        py=lambda value: format_timestamp(parse_timestamp(value)),
    ),
    "NUMERIC": _Encoding(  # integer part and nano-units as INT64: exact for |x| < 9.2e18 (else an error)
        sql=lambda col: (
            f"CONCAT(CAST(CAST(TRUNC({col}) AS INT64) AS STRING), ':', "
            f"CAST(CAST(({col} - TRUNC({col})) * 1000000000 AS INT64) AS STRING))"
        ),
        py=_py_numeric,
    ),
}


def _digest_columns(entity: Entity) -> list[tuple[str, _Encoding]]:
    columns = [("id", "STRING"), ("hub_version", "INT64")]
    columns += [(f.name, BQ_TYPES[f.type]) for f in entity.fields]
    return [(name, _ENCODINGS[bq_type]) for name, bq_type in columns]


def sql_row_text(entity: Entity) -> str:
    """SQL text of a row's explicitly formatted columns; its SHA-256 equals `row_digest`."""
    parts = (f"IFNULL({enc.sql(f'`{name}`')}, '{_NULL_TOKEN}')" for name, enc in _digest_columns(entity))
    return "CONCAT(" + f", '{_SEPARATOR}', ".join(parts) + ")"


def row_digest(entity: Entity, record_id: str, version: int, data: dict[str, Any]) -> str:
    """The hex SHA-256 of a row's explicitly formatted columns, equal to the warehouse's computation."""
    values = {"id": record_id, "hub_version": version, **data}
    parts = (
        _NULL_TOKEN if values.get(name) is None else enc.py(values[name])
        for name, enc in _digest_columns(entity)
    )
    return hashlib.sha256(_SEPARATOR.join(parts).encode()).hexdigest()


def sql_row_digest(entity: Entity) -> str:
    """SQL expression of a row's hex digest (`row_digest` on the warehouse side)."""
    return f"TO_HEX(SHA256({sql_row_text(entity)}))"


def sql_fold(digest: str) -> str:
    """SQL aggregate folding a column of hex digests as `fold` does, to an INT64 (`checksum_hex` it)."""
    return f"BIT_XOR(CAST(CONCAT('0x', SUBSTR({digest}, 1, {_CHECKSUM_HEX_DIGITS})) AS INT64))"


def fold(digests: Iterable[str]) -> str:
    """XOR of the first 60 bits of each digest, as `sql_fold` computes it; hex, 15 digits."""
    acc = 0
    for digest in digests:
        acc ^= int(digest[:_CHECKSUM_HEX_DIGITS], 16)
    return checksum_hex(acc)


def checksum_hex(folded: int | None) -> str:
    """A folded checksum as hex; an empty table folds to NULL in SQL and to 0 here."""
    return f"{folded or 0:0{_CHECKSUM_HEX_DIGITS}x}"
