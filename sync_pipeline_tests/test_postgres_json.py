"""JSON to and from Postgres through orjson reads and writes what the standard library's `json` would: the
same values back (integers beyond 64 bits exact, a store's fractions as Decimal), and a NaN refused by
Postgres instead of stored as null."""

from __future__ import annotations

import json
import math
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from sync_pipeline.postgres_json import json_default, dumps, loads
from sync_pipeline_tests.fixtures.topology import Topology

_SCALARS = (st.none() | st.booleans() | st.text() | st.floats(allow_nan=False, allow_infinity=False)
            | st.integers() | st.integers(min_value=10**17, max_value=10**40)
            | st.sampled_from(["123456789012345678901", "bench.1@example.com", "5f0e7a5c-3c3b-4d43-9c1a-0e7a5c1e1e1e",
                               "1.5", ": 1e5", "[-12.0e3]"]))
JSON_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
# What a write may hold beyond JSON's types.
WRITTEN_VALUES = st.recursive(
    _SCALARS | st.floats() | st.datetimes(timezones=st.just(timezone.utc)) | st.datetimes() | st.dates()
    | st.uuids() | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner,
                                                              max_size=4), max_leaves=20)


def _same(a: Any, b: Any) -> bool:
    """Equal, a NaN equal to a NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_a_document_reads_as_json_reads_it(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, separators=(",", ":"))):
        assert _same(loads(text.encode()), json.loads(text))
        assert _same(loads(text.encode(), parse_float=Decimal), json.loads(text, parse_float=Decimal))


@settings(max_examples=300, deadline=None)
@given(WRITTEN_VALUES)
def test_a_value_is_written_as_json_writes_it(value: Any) -> None:
    written = dumps(value)
    assert _same(json.loads(written), json.loads(json.dumps(value, default=json_default)))


def test_the_exact_cases_take_the_standard_library() -> None:
    assert loads(b'{"big": 123456789012345678901234567890}') == {"big": 123456789012345678901234567890}
    assert loads(b'{"amount": 0.1}', parse_float=Decimal) == {"amount": Decimal("0.1")}
    assert loads(b"1e400") == math.inf
    assert dumps({"big": 10**30}) == '{"big": 1000000000000000000000000000000}'
    assert b"NaN" in _bytes(dumps({"x": [1.0, math.nan]}))
    moment = datetime(2025, 1, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    assert json.loads(dumps({"at": moment, "day": date(2025, 1, 2), "id": uuid.UUID(int=1)})) == {
        "at": moment.isoformat(), "day": "2025-01-02", "id": "00000000-0000-0000-0000-000000000001"}


def _bytes(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


def test_jsonb_through_the_hub_and_a_store_keeps_every_digit_and_refuses_nan(topology: Topology) -> None:
    stored = '{"big": 123456789012345678901234567890, "amount": 12.345678901234567890123, "name": "Ada"}'
    with topology.hub.connect() as conn:
        row = conn.execute("select %s::jsonb as doc", (stored,)).fetchone()
        assert row is not None and row["doc"] == {"big": 123456789012345678901234567890,
                                                  "amount": 12.345678901234567, "name": "Ada"}
        written = conn.execute("select %s::jsonb as doc", (Jsonb(row["doc"]),)).fetchone()
        assert written is not None and written["doc"] == row["doc"]
        # json writes NaN as a token Postgres refuses: the value fails, it is not stored as null.
        with pytest.raises(psycopg.DataError), conn.transaction():
            conn.execute("select %s::jsonb", (Jsonb({"x": math.nan}),))
    with topology.supabase.connect() as conn:
        row = conn.execute("select %s::jsonb as doc", (stored,)).fetchone()
        assert row is not None and row["doc"] == {"big": 123456789012345678901234567890,
                                                  "amount": Decimal("12.345678901234567890123"), "name": "Ada"}
