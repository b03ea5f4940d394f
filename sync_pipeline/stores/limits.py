"""Values a store cannot hold, declared per store (`stores/<store>/limits.py`) and checked before a write,
so that a record out of a store's range fails alone, with a reason an operator understands, instead of
failing the batch it travels in.

A limit applies to the canonical values (`model.canonical`) of some field types and says why a value is
beyond it, or None when the store can hold it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, InvalidOperation
from itertools import repeat
from typing import Any

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.canonical import CanonicalValueError, parse_timestamp
from sync_pipeline.model.entities import Entity, FieldType

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TEXT_TYPES = frozenset({FieldType.TEXT, FieldType.URL, FieldType.EMAIL, FieldType.ENUM})
_WIDE = Context(prec=120)  # rounding a number near a limit must not run out of digits
_SHORT = Context(prec=6)


class ValueOutOfRange(ValueError):
    """A record holds a value the target store cannot hold; it is not sent there."""


@dataclass(frozen=True)
class ValueLimit:
    """`refuse(value)` says why the store cannot hold a canonical value of one of `types`, or None.
    `clears(values)`, when given, is a whole-column test that is True only when no value of the (non-null)
    list can break the limit: a batch of ordinary values then skips the per-value calls, which cost more than
    the write itself on a 100k-row apply."""

    types: frozenset[FieldType]
    refuse: Callable[[Any], str | None]
    clears: Callable[[list[Any]], bool] | None = None


def refused_values(limits: Sequence[ValueLimit], entity: Entity, record: GoldenRecord,
                   fields: Sequence[str] | None = None) -> str | None:
    """The first reason a live record breaks one of a store's limits (`"<field> <value> is beyond ..."`);
    None when the store can hold every value, or the record is a tombstone. `fields`: only those."""
    if record.deleted or record.data is None:
        return None
    for f in entity.fields:
        value = record.data.get(f.name)
        if value is None or (fields is not None and f.name not in fields):
            continue
        for limit in limits:
            if f.type in limit.types and (reason := limit.refuse(value)) is not None:
                return f"{f.name} {reason}"
    return None


def refusals(limits: Sequence[ValueLimit], entity: Entity, records: Sequence[GoldenRecord]
             ) -> dict[str, ValueOutOfRange]:
    """Record id -> why the store cannot hold it, for the records of a batch that break a limit. Each field
    is first tested as a whole column; only the fields a column test does not clear are checked value by
    value (a field cleared for the batch holds no reason, so the first reason found is the same)."""
    live = [g.data for g in records if not g.deleted and g.data is not None]
    suspect = []
    for f in entity.fields:
        applying = [limit for limit in limits if f.type in limit.types]
        if not applying:
            continue
        values = [v for v in map(dict.get, live, repeat(f.name)) if v is not None]
        if values and not all(limit.clears is not None and limit.clears(values) for limit in applying):
            suspect.append(f.name)
    if not suspect:
        return {}
    return {g.record_id: ValueOutOfRange(reason) for g in records
            if (reason := refused_values(limits, entity, g, suspect)) is not None}


def _shown(value: Any) -> str:
    """A value short enough for an error message: huge numbers in exponent form, long text cut."""
    text = str(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        return repr(text if len(text) <= 40 else text[:37] + "...")
    if number.is_finite() and number.copy_abs() >= 10**15:
        return f"{_SHORT.normalize(number):e}"
    return text if len(text) <= 40 else repr(text[:37] + "...")


def number_range(types: frozenset[FieldType], scale: int, below: Decimal, *, quantum: Decimal | None = None,
                 limit: str) -> ValueLimit:
    """|value x 10^scale| (rounded to `quantum` first, as the store rounds) must stay below `below`."""
    def refuse(value: Any) -> str | None:
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return f"{_shown(value)} is not a number ({limit})"
        if not number.is_finite():
            return f"{_shown(value)} is beyond {limit}"
        scaled = number.scaleb(scale, context=_WIDE).copy_abs()
        if quantum is not None and scaled < below * 10:  # quantize needs the digits; far beyond is beyond
            scaled = scaled.quantize(quantum, context=_WIDE)
        return f"{_shown(value)} is beyond {limit}" if scaled >= below else None
    return ValueLimit(types, refuse)


def timestamp_range(earliest: datetime, latest: datetime, *, limit: str) -> ValueLimit:
    def refuse(value: Any) -> str | None:
        try:
            moment = parse_timestamp(value)
        except CanonicalValueError:
            return f"{_shown(value)} is not a timestamp ({limit})"
        return None if earliest <= moment <= latest else f"{_shown(value)} is beyond {limit}"
    return ValueLimit(frozenset({FieldType.TIMESTAMP}), refuse)


def no_nul(*, store: str) -> ValueLimit:
    """Postgres text cannot hold U+0000."""
    def refuse(value: Any) -> str | None:
        return f"{_shown(value)} holds a NUL character, which {store} cannot store" if "\x00" in str(value) else None

    def clears(values: list[Any]) -> bool:
        try:
            text = "".join(values)  # canonical text values are strings: no str() call per value
        except TypeError:
            text = "".join(map(str, values))
        return "\x00" not in text
    return ValueLimit(TEXT_TYPES, refuse, clears)


def int64(types: frozenset[FieldType], *, limit: str) -> ValueLimit:
    def refuse(value: Any) -> str | None:
        try:
            number = int(value)
        except (TypeError, ValueError):
            return f"{_shown(value)} is not a whole number ({limit})"
        return None if INT64_MIN <= number <= INT64_MAX else f"{_shown(value)} is beyond {limit}"

    def clears(values: list[Any]) -> bool:
        # Plain ints only (a bool, a numeric string... is tested value by value).
        return all(type(v) is int for v in values) and INT64_MIN <= min(values) and max(values) <= INT64_MAX
    return ValueLimit(types, refuse, clears)

