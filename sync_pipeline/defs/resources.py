"""One `ConfigurableResource` per store plus the hub and the sync settings. Secrets come from `dg.EnvVar`
in `definitions.py`, so the UI shows the variable's name, never its value."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Optional, Protocol

import dagster as dg
from psycopg_pool import ConnectionPool
from pydantic import Field, PrivateAttr

from sync_pipeline.hub.connection import HUB_CONNECT_TIMEOUT_S, HubTimeouts, open_pool
from sync_pipeline.hub.hub import Hub
from sync_pipeline.settings import DEFAULTS, SyncSettings, Thresholds
from sync_pipeline.stores.base import StoreSpec
from sync_pipeline.stores.postgres import LOCAL_DB, SUPABASE, PostgresStore
from sync_pipeline.stores.postgres.store import DATA_API_SCHEMAS
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.store import TwentyStore


class StoreResource(Protocol):
    """What the asset factory, the checks and the sensors need of a store's resource."""

    @property
    def configured(self) -> bool: ...

    @property
    def misconfiguration(self) -> str | None:
        """Why the settings that are given cannot work (some set, others missing); None when they can."""
        ...

    def store(self, hub: Hub) -> Any: ...


class HubResource(dg.ConfigurableResource):
    """The hub: the `sync` schema holding golden records and all sync state (by default in the local DB).
    While a run's step or a tick executes, its hub work shares one connection pool that the resource opens
    and closes."""

    dsn: str = Field(description="Postgres URL of the hub database (SYNC_HUB_DATABASE_URL)")
    pool_size: int = Field(default=4, description="Most hub connections open at once in one process")
    lock_timeout_ms: int = Field(default=DEFAULTS.hub_lock_timeout_ms,
                                 description="A hub statement waiting on a lock this long fails")
    statement_timeout_ms: int = Field(default=DEFAULTS.hub_statement_timeout_ms,
                                      description="No hub statement runs longer")
    connect_timeout_s: int = Field(default=HUB_CONNECT_TIMEOUT_S, description="Seconds to reach the hub")

    _pool: Optional[ConnectionPool[Any]] = PrivateAttr(default=None)

    def timeouts(self) -> HubTimeouts:
        return HubTimeouts(self.lock_timeout_ms, self.statement_timeout_ms, self.connect_timeout_s)

    def hub(self) -> Hub:
        return Hub(self.dsn, pool=self._pool, timeouts=self.timeouts())

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Migrated on a connection of its own first: an unreachable hub or a malformed URL fails here at once,
        # with the password masked, instead of as a pool timeout.
        self.hub().migrate()  # once per run or tick; idempotent
        self._pool = open_pool(self.dsn, self.timeouts(), self.pool_size)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class PostgresStoreResource(dg.ConfigurableResource):
    """A store reached with a Postgres connection. Without a URL the store is not configured: its assets
    report so and its checks warn, while the rest of the sync runs."""

    spec: ClassVar[StoreSpec]
    dsn: Optional[str] = Field(default=None, description="Postgres URL; unset = store not configured")
    sslmode: Optional[str] = Field(default=None, description="libpq sslmode")
    lock_timeout_ms: int = Field(default=DEFAULTS.lock_timeout_ms,
                                 description="A statement waiting on a row lock this long gives up its rows")
    statement_timeout_ms: int = Field(default=DEFAULTS.statement_timeout_ms,
                                      description="No statement against the store runs longer")

    @property
    def configured(self) -> bool:
        return bool(self.dsn)

    @property
    def misconfiguration(self) -> str | None:
        return None  # one setting: set or not

    def store(self, hub: Hub) -> PostgresStore:
        if not self.dsn:
            raise dg.Failure(f"{self.spec.label} is not configured")
        return PostgresStore(self.spec.key, self.dsn, id_map=hub.id_map(self.spec.key), sslmode=self.sslmode,
                             lock_timeout_ms=self.lock_timeout_ms, statement_timeout_ms=self.statement_timeout_ms)


class LocalDbResource(PostgresStoreResource):
    """The internal back-office Postgres database (LOCAL_DATABASE_URL)."""

    spec: ClassVar[StoreSpec] = LOCAL_DB


class SupabaseResource(PostgresStoreResource):
    """The app's Supabase database through its Postgres connection (SUPABASE_DATABASE_URL): the direct
    host, the session pooler or the transaction pooler (port 6543). TLS is required by default; an sslmode in
    the URL (verify-full with Supabase's CA as sslrootcert) takes precedence."""

    spec: ClassVar[StoreSpec] = SUPABASE
    sslmode: Optional[str] = Field(default="require",
                                   description="libpq sslmode unless the URL names one (require by default)")
    data_api_schemas: list[str] = Field(
        default=list(DATA_API_SCHEMAS), description="The schemas the project's Data API exposes (Project Settings "
        "-> API -> Exposed schemas): a synced table there must have row-level security on")


class TwentyResource(dg.ConfigurableResource):
    """Twenty CRM's REST API (TWENTY_API_URL, TWENTY_API_KEY). Without both it is not configured."""

    api_url: Optional[str] = Field(default=None, description="Base URL, e.g. https://api.twenty.com")
    api_key: Optional[str] = Field(default=None, description="API key (a secret)")
    requests_per_minute: int = Field(default=100, description="The workspace's request budget")
    overlap_minutes: int = Field(default=5, description="How far polling re-reads behind its watermark")
    id_listing_minutes: int = Field(default=15, description="How often Twenty's ids are listed to find records "
                                    "destroyed without a webhook (a page of 60-200 ids per request)")
    webhook_secret: Optional[str] = Field(default=None, description="Secret that signs Twenty's webhooks")

    @property
    def configured(self) -> bool:
        return bool(self.api_url and self.api_key)

    @property
    def misconfiguration(self) -> str | None:
        if bool(self.api_url) != bool(self.api_key):
            given, missing = ("the API URL", "its API key") if self.api_url else ("an API key", "the API URL")
            return f"{given} is set but not {missing} (TWENTY_API_URL, TWENTY_API_KEY)"
        return None

    # One client per run, so that every asset of the run shares one rate-limit budget and connection pool.
    _client: Optional[TwentyClient] = PrivateAttr(default=None)

    def client(self) -> TwentyClient:
        if not (self.api_url and self.api_key):
            raise dg.Failure("Twenty is not configured")
        if self._client is None:
            self._client = TwentyClient(self.api_url, self.api_key, requests_per_minute=self.requests_per_minute)
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()

    def store(self, hub: Hub) -> TwentyStore:
        return TwentyStore(self.client(), hub.id_map(TwentyStore.name),
                           overlap=timedelta(minutes=self.overlap_minutes),
                           id_listing_interval=timedelta(minutes=self.id_listing_minutes))


class SyncSettingsResource(dg.ConfigurableResource):
    """How the sync behaves: batch sizes, tiebreak priority, thresholds for the checks. The defaults are
    `sync_pipeline.settings`'s."""

    batch_size: int = Field(default=DEFAULTS.batch_size,
                            description="Records per batch where a store has no batch size of its own")
    resolve_batch_size: int = Field(default=DEFAULTS.resolve_batch_size,
                                    description="Inbox rows resolved per hub transaction")
    store_priority: list[str] = Field(default=list(DEFAULTS.store_priority),
                                      description="Tiebreak when two edits carry the same time: earlier wins")

    lag_seconds_warn: float = Field(default=DEFAULTS.thresholds.lag_seconds,
                                    description="Capture lag that warns (seconds)")
    conflict_rate_warn: float = Field(default=DEFAULTS.thresholds.conflict_rate,
                                      description="Conflicts per resolved change that warn")
    error_rate_warn: float = Field(default=DEFAULTS.thresholds.error_rate,
                                   description="Failed writes per record in a run that warn")
    unresolved_error_minutes: float = Field(default=DEFAULTS.thresholds.unresolved_error_minutes,
                                            description="An error unresolved this long fails")
    inbox_age_seconds_warn: float = Field(default=DEFAULTS.thresholds.inbox_age_seconds,
                                          description="A webhook hint waiting this long warns")
    reconcile_delete_threshold: float = Field(
        default=DEFAULTS.reconcile_delete_threshold,
        description="Reconciliation turns absent records into deletes only below this share")
    adoption_confirm_threshold: int = Field(
        default=DEFAULTS.adoption_confirm_threshold,
        description="A store's first sync that would overwrite more records than this waits for `confirm`")
    confirm: bool = Field(default=False, description="Confirm adopting stores whose first sync would overwrite "
                                                     "more records than the threshold (see the sync_plan job)")

    def thresholds(self) -> Thresholds:
        return Thresholds(lag_seconds=self.lag_seconds_warn, conflict_rate=self.conflict_rate_warn,
                          error_rate=self.error_rate_warn, unresolved_error_minutes=self.unresolved_error_minutes,
                          inbox_age_seconds=self.inbox_age_seconds_warn)

    def settings(self) -> SyncSettings:
        return SyncSettings(batch_size=self.batch_size, resolve_batch_size=self.resolve_batch_size,
                            store_priority=tuple(self.store_priority),
                            reconcile_delete_threshold=self.reconcile_delete_threshold,
                            adoption_confirm_threshold=self.adoption_confirm_threshold,
                            confirm_adoption=self.confirm, thresholds=self.thresholds())
