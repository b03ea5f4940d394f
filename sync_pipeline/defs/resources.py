"""One `ConfigurableResource` per store plus the hub and the sync settings. Secrets come from `dg.EnvVar`
in `definitions.py`, so the UI shows the variable's name, never its value."""

from __future__ import annotations

from typing import ClassVar, Optional

import dagster as dg
from pydantic import Field

from sync_pipeline.hub.hub import Hub
from sync_pipeline.pipeline import DEFAULT_PRIORITY, SyncSettings
from sync_pipeline.stores.postgres import PostgresStore


class HubResource(dg.ConfigurableResource):
    """The hub: the `sync` schema holding golden records and all sync state (by default in the local DB)."""

    dsn: str = Field(description="Postgres URL of the hub database (SYNC_HUB_DATABASE_URL)")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        Hub(self.dsn).migrate()  # once per run or tick; idempotent

    def hub(self) -> Hub:
        return Hub(self.dsn)


class PostgresStoreResource(dg.ConfigurableResource):
    """A store reached with a Postgres connection. Without a URL the store is not configured: its assets
    report so and its checks warn, while the rest of the sync runs."""

    store_name: ClassVar[str]
    dsn: Optional[str] = Field(default=None, description="Postgres URL; unset = store not configured")
    schema_name: str = Field(default="public", description="Schema of the app tables")
    sslmode: Optional[str] = Field(default=None, description="libpq sslmode")
    transaction_pooler: bool = Field(
        default=False, description="Connected through a transaction pooler (no prepared statements)")

    @property
    def configured(self) -> bool:
        return bool(self.dsn)

    def store(self) -> PostgresStore:
        if not self.dsn:
            raise dg.Failure(f"{self.store_name} is not configured")
        return PostgresStore(self.store_name, self.dsn, schema=self.schema_name, sslmode=self.sslmode,
                             transaction_pooler=self.transaction_pooler)


class LocalDbResource(PostgresStoreResource):
    """The internal back-office Postgres database (LOCAL_DATABASE_URL)."""

    store_name: ClassVar[str] = "local_db"


class SupabaseResource(PostgresStoreResource):
    """The app's Supabase database through its Postgres connection (SUPABASE_DATABASE_URL): the direct
    host or the session pooler; set `transaction_pooler` for port 6543. TLS is required by default."""

    store_name: ClassVar[str] = "supabase"
    sslmode: Optional[str] = Field(default="require", description="libpq sslmode (require by default)")


class SyncSettingsResource(dg.ConfigurableResource):
    """How the sync behaves: batch size, interval, tiebreak priority, thresholds for the checks."""

    batch_size: int = Field(default=100, description="Records per batch where a store has no tighter limit")
    sync_interval_minutes: int = Field(default=5, description="How often Twenty is polled")
    store_priority: list[str] = Field(default=list(DEFAULT_PRIORITY),
                                      description="Tiebreak when two edits carry the same time: earlier wins")

    def settings(self) -> SyncSettings:
        return SyncSettings(batch_size=self.batch_size, store_priority=tuple(self.store_priority))
