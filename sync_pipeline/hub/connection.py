"""The hub's database connection, shared by every part of the hub."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from sync_pipeline.hub.migrations import migrate
from sync_pipeline.redaction import call_masked, dsn_secrets

Conn: TypeAlias = psycopg.Connection[DictRow]


def one(cursor: psycopg.Cursor[DictRow]) -> DictRow:
    """The row of a statement that always returns one (an aggregate, an insert ... returning)."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("the statement returned no row")
    return row


def jsonb_or_null(value: Any) -> Jsonb | None:
    """None stays SQL NULL (a tombstone's data), anything else is stored as JSON."""
    return Jsonb(value) if value is not None else None


class HubConnection:
    """The hub database. Connections are short-lived: one per unit of work."""

    def __init__(self, dsn: str, **connect_kwargs: Any) -> None:
        self._dsn = dsn
        self._secrets = dsn_secrets(dsn)
        self._connect_kwargs = {"connect_timeout": 10, **connect_kwargs}

    @contextmanager
    def connect(self) -> Iterator[Conn]:
        # A malformed URL's password, which libpq quotes in its error, is masked there.
        conn = call_masked(lambda: psycopg.connect(self._dsn, row_factory=dict_row, **self._connect_kwargs),
                           *self._secrets)
        with conn:
            yield conn

    def migrate(self) -> list[int]:
        with self.connect() as conn:
            return migrate(conn)
