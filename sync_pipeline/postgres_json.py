"""jsonb read from Postgres through orjson, giving exactly what the standard library's `json` gives: orjson
parses twice as fast, and a bulk sync reads every change, golden record and record state as jsonb.

orjson reads integers up to 64 bits exactly, as `json` does; it reads a number with a fraction or an exponent
as a float, and an integer beyond 64 bits as a float too (losing digits). So a document whose value holds a
float is read again by `json` (where a store reads fractions as Decimal, exactly), and so is one orjson
refuses (`1e400`, which `json` reads as infinity). Writing stays with `json`: orjson writes NaN as null, where
a value Postgres cannot store must fail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_loads


def loads(data: str | bytes, parse_float: Callable[[str], Any] | None = None) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data, parse_float=parse_float)  # `json` reads it, or raises its own error
    return json.loads(data, parse_float=parse_float) if _holds_float(value) else value


def _holds_float(value: Any) -> bool:
    if type(value) is float:
        return True
    inside = value.values() if type(value) is dict else value if type(value) is list else ()
    # Most documents are flat records of text and integers: one pass over their types, no call per value.
    return not _DEEPER.isdisjoint(map(type, inside)) and any(map(_holds_float, inside))


_DEEPER = frozenset({float, dict, list})


def use_fast_json(conn: psycopg.Connection[Any], exact_decimals: bool = False) -> None:
    """jsonb and json read by `loads` on this connection; `exact_decimals`: numbers with a fraction or an
    exponent as Decimal."""
    set_json_loads(partial(loads, parse_float=Decimal) if exact_decimals else loads, conn)
