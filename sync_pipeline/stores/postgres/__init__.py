"""Postgres stores (the local DB, and Supabase through its Postgres connection): change capture by an xid8
change log, version-guarded binary COPY apply."""

from sync_pipeline.stores.postgres.ddl import CDC_SCHEMA, PG_TYPES
from sync_pipeline.stores.postgres.specs import LOCAL_DB, SUPABASE
from sync_pipeline.stores.postgres.store import PostgresStore

__all__ = ["CDC_SCHEMA", "LOCAL_DB", "PG_TYPES", "SUPABASE", "PostgresStore"]
