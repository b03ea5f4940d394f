"""JSON between this process and Postgres through orjson, reading and writing exactly what the standard
library's `json` would: orjson is several times faster, and jsonb is much of a bulk sync's own CPU (every
change, golden record and record state crosses it).

Where orjson would give something else, `json` does the work:
- reading, a document that may hold a number with a fraction or an exponent (a store reads those as
  Decimal, exactly; orjson cannot) or an integer of 19 digits or more (orjson reads one beyond 64 bits as a
  float, losing digits). The test is on the text, so a string that looks like such a number also takes the
  slow path, which reads it the same;
- writing, an integer beyond 64 bits (orjson refuses it) and NaN or infinity (orjson writes null, where
  `json` writes a token Postgres refuses: a value the hub cannot store must fail, not become null).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from functools import partial
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads

# A number token with a fraction or an exponent, or of 19 digits or more, at the start of a value.
_INEXACT_NUMBER = re.compile(rb"(?:^|[:,\[])\s*-?(?:\d+[.eE]|\d{19})")
# Datetimes go through `default` (their isoformat), as `json` with that default writes them.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def json_default(value: Any) -> Any:
    """What a value JSON has no type for is written as: a datetime as its isoformat, anything else (a
    uuid, a Decimal) as its text, which is what Postgres reads."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def loads(data: str | bytes, parse_float: Callable[[str], Any] | None = None) -> Any:
    if isinstance(data, str):
        data = data.encode()
    if _INEXACT_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # `json` reads it, or raises its own error
    return json.loads(data, parse_float=parse_float)


def dumps(value: Any) -> bytes | str:
    try:
        text = orjson.dumps(value, default=json_default, option=_OPTIONS)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, default=json_default)
    if b"null" in text and _holds_non_finite(value):
        return json.dumps(value, default=json_default)
    return text


def _holds_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(_holds_non_finite, value.values()))
    if isinstance(value, (list, tuple)):
        return any(map(_holds_non_finite, value))
    return False


def use_fast_json(conn: psycopg.Connection[Any], exact_decimals: bool = False) -> None:
    """JSON on this connection read and written by `loads` and `dumps`; `exact_decimals`: numbers with a
    fraction or an exponent are read as Decimal."""
    set_json_loads(partial(loads, parse_float=Decimal) if exact_decimals else loads, conn)
    set_json_dumps(dumps, conn)

