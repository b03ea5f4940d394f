"""How the sync behaves: every setting and its default, in one place. Free of Dagster: the pipeline and the
safety checks take these objects, and the Dagster resource (`defs/resources.py`) builds them from its
configuration, defaulting to the values here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sync_pipeline.engine.adoption import AdoptWins
from sync_pipeline.hub.connection import HUB_LOCK_TIMEOUT_MS, HUB_STATEMENT_TIMEOUT_MS
from sync_pipeline.stores.postgres.store import LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS
from sync_pipeline.stores.registry import STORES, priority_order


def configured_adopt_wins() -> dict[str, AdoptWins]:
    """Each store's `adopt_wins` from the sync configuration."""
    from sync_pipeline.config import active_config  # the configuration builds the entity registry: load late

    config = active_config()
    return {spec.key: config.adopt_wins(spec.key) for spec in STORES}


def sync_interval_minutes() -> int:
    """How often the schedule syncs (Twenty has no change feed to wake us): SYNC_INTERVAL_MINUTES, default 5.
    Read from the environment because schedules are built when the code location loads."""
    return int(os.getenv("SYNC_INTERVAL_MINUTES", "5"))


@dataclass(frozen=True)
class Thresholds:
    """Where the monitoring checks turn from PASS to WARN (or FAIL)."""

    lag_seconds: float = 900  # capture behind by more than three 5-minute intervals
    lag_rows: int = 10_000
    inbox_age_seconds: float = 600  # a webhook hint waiting longer than two intervals
    conflict_rate: float = 0.10  # conflicts per resolved change over the recent runs
    error_rate: float = 0.05  # failed writes per attempted record in the latest run
    unresolved_error_minutes: float = 60  # an error unresolved this long fails
    recent_runs: int = 10


@dataclass(frozen=True)
class SyncSettings:
    # Records per capture batch, webhook-hint batch and publish batch, where a store declares no publish
    # batch size of its own (`StoreSpec.publish_batch_size`).
    batch_size: int = 100
    # Inbox rows resolved per hub transaction.
    resolve_batch_size: int = 2_000
    # Tiebreak when two edits carry the same modification time: earlier wins.
    store_priority: tuple[str, ...] = field(default_factory=priority_order)
    # Reconciliation turns records absent from a store into deletes only below this share of the live ones.
    reconcile_delete_threshold: float = 0.05
    # A store's first sync adopts the records it holds; it waits for the operator's confirmation when it
    # would overwrite more records than this (`confirm_adoption`: the run config's `confirm`, `--confirm`).
    adoption_confirm_threshold: int = 100
    confirm_adoption: bool = False
    # Store -> whose values win for a record linked on adoption (the configuration's `adopt_wins`).
    adopt_wins: dict[str, AdoptWins] = field(default_factory=configured_adopt_wins)
    # Bounded waits in a Postgres store: a statement waiting on an application's row lock longer than this
    # fails, and its rows wait for the next run; none runs longer than the statement timeout.
    lock_timeout_ms: int = LOCK_TIMEOUT_MS
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
    # The same bounds on the hub's statements (its resolve locks golden rows; a stuck one must not hang a run).
    hub_lock_timeout_ms: int = HUB_LOCK_TIMEOUT_MS
    hub_statement_timeout_ms: int = HUB_STATEMENT_TIMEOUT_MS
    thresholds: Thresholds = field(default_factory=Thresholds)


DEFAULTS = SyncSettings()
