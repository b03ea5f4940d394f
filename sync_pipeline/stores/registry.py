"""Every store the sync knows, in one list. The Dagster side (assets, checks, sensors, resources) and the
tiebreak order are derived from it; each store declares its spec in its own package."""

from __future__ import annotations

from sync_pipeline.stores.base import StoreSpec
from sync_pipeline.stores.bigquery.spec import BIGQUERY
from sync_pipeline.stores.postgres.specs import LOCAL_DB, SUPABASE
from sync_pipeline.stores.twenty.spec import TWENTY

STORES: tuple[StoreSpec, ...] = (TWENTY, SUPABASE, LOCAL_DB, BIGQUERY)
_BY_KEY = {spec.key: spec for spec in STORES}


def store_spec(key: str) -> StoreSpec:
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no store {key!r}; the stores are {', '.join(_BY_KEY)}") from None


def priority_order() -> tuple[str, ...]:
    """Source keys, highest priority first: who wins a tie on modification time."""
    ranked = [s for s in STORES if s.priority is not None]
    return tuple(s.key for s in sorted(ranked, key=lambda s: s.priority or 0))


def sources() -> list[StoreSpec]:
    return [s for s in STORES if s.captures]


def targets() -> list[StoreSpec]:
    return [s for s in STORES if s.publishes]


def sync_log_host() -> StoreSpec | None:
    """The warehouse that receives the sync's own run log, if any store hosts it."""
    return next((s for s in STORES if s.hosts_sync_log), None)
