"""jsonb read from Postgres through msgspec gives what the standard library's `json` gives: the same values
(integers beyond 64 bits exact, a store's fractions as Decimal)."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from sync_pipeline.postgres_json import loads
from sync_pipeline_tests.fixtures.topology import Topology

_SCALARS = (st.none() | st.booleans() | st.text() | st.floats(allow_nan=False, allow_infinity=False)
            | st.integers() | st.integers(min_value=10**17, max_value=10**40)
            | st.sampled_from(["123456789012345678901", "bench.1@example.com", "5f0e7a5c-3c3b-4d43-9c1a-0e7a5c1e1e1e",
                               "1.5", ": 1e5", "[-12.0e3]"]))
JSON_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types throughout (1 is not 1.0, nor Decimal 1)."""
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


def test_the_edge_cases_read_as_json_reads_them() -> None:
    assert loads(b'{"big": 123456789012345678901234567890}') == {"big": 123456789012345678901234567890}
    assert loads(b'{"a": [{"amount": 0.1}]}', parse_float=Decimal) == {"a": [{"amount": Decimal("0.1")}]}
    assert loads(b"1e400") == math.inf  # msgspec refuses it: `json` reads it
    assert loads(b"1e400", parse_float=Decimal) == Decimal("1e400")
    assert type(loads(b'{"n": 9223372036854775807}')["n"]) is int
    assert type(loads(b'{"n": 2.0}')["n"]) is float


def test_jsonb_through_the_hub_and_a_store_keeps_every_digit(topology: Topology) -> None:
    stored = '{"big": 123456789012345678901234567890, "amount": 12.345678901234567890123, "name": "Ada"}'
    with topology.hub.connect() as conn:
        row = conn.execute("select %s::jsonb as doc", (stored,)).fetchone()
        assert row is not None and row["doc"] == {"big": 123456789012345678901234567890,
                                                  "amount": 12.345678901234567, "name": "Ada"}
        written = conn.execute("select %s::jsonb as doc", (Jsonb(row["doc"]),)).fetchone()
        assert written is not None and written["doc"] == row["doc"]
    with topology.supabase.connect() as conn:
        row = conn.execute("select %s::jsonb as doc", (stored,)).fetchone()
        assert row is not None and row["doc"] == {"big": 123456789012345678901234567890,
                                                  "amount": Decimal("12.345678901234567890123"), "name": "Ada"}
