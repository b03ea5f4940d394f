"""Reading values Postgres holds and Python cannot: a timestamptz after year 9999 (Postgres goes to 294276 AD),
before year 1, or `infinity`. psycopg refuses the whole result for one such value; read with this loader,
it comes back as Postgres's text, which the canonical layer refuses with a reason, so the row is reported
invalid and every other row is read."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import postgres, pq
from psycopg.adapt import Buffer, Loader

_TIMESTAMPTZ = postgres.types["timestamptz"].oid
# The loader psycopg would use (its C implementation where installed), captured before any override.
_EXACT = psycopg.adapters.get_loader(_TIMESTAMPTZ, pq.Format.TEXT)


class TimestamptzOrText(Loader):
    """A timestamptz as `datetime`, or as the text Postgres sent when Python cannot represent it."""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        if _EXACT is None:
            raise LookupError("psycopg has no text loader for timestamptz")
        self._exact = _EXACT(oid, context)

    def load(self, data: Buffer) -> Any:
        try:
            return self._exact.load(data)
        except psycopg.DataError:
            return bytes(data).decode()


def read_any_timestamp(conn: psycopg.Connection[Any]) -> None:
    """Load this connection's timestamptz values with `TimestamptzOrText`."""
    conn.adapters.register_loader(_TIMESTAMPTZ, TimestamptzOrText)
