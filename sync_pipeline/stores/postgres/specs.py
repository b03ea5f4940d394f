"""The two Postgres stores the sync knows. Both are `PostgresStore`s; they differ in name, rank and how
they are reached (see their Dagster resources)."""

from sync_pipeline.stores.base import StoreSpec
from sync_pipeline.stores.postgres.store import PostgresStore

# One COPY and one guarded upsert per 5,000 rows.
_PUBLISH_BATCH = 5_000

SUPABASE = StoreSpec(key="supabase", label="Supabase", kinds=frozenset({"supabase", "postgres"}),
                     store_class=PostgresStore, priority=2, publish_batch_size=_PUBLISH_BATCH)
LOCAL_DB = StoreSpec(key="local_db", label="the local DB", kinds=frozenset({"postgres"}),
                     store_class=PostgresStore, priority=3, publish_batch_size=_PUBLISH_BATCH)
