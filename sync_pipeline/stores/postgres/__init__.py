"""Postgres stores (the local DB, and Supabase through its Postgres connection): each entity in the table the
sync configuration maps it to, change capture by an xid8 change log, version-guarded binary COPY apply; the
sync's own state in the `sync_cdc` schema."""

from sync_pipeline.stores.postgres.ddl import CDC_SCHEMA
from sync_pipeline.stores.postgres.specs import LOCAL_DB, SUPABASE
from sync_pipeline.stores.postgres.store import PostgresStore
from sync_pipeline.stores.postgres.tables import PG_TYPES

__all__ = ["CDC_SCHEMA", "LOCAL_DB", "PG_TYPES", "SUPABASE", "PostgresStore"]
