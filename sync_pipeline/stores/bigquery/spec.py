"""BigQuery as the sync knows it: a target (never a source) that also hosts the sync's own run log."""

from sync_pipeline.stores.base import StoreSpec
from sync_pipeline.stores.bigquery.store import STORE_NAME, BigQueryStore

# Everything unseen in one apply: one load job and one MERGE per table per run, far inside BigQuery's
# 1,500 table modifications per table a day at a 5-minute interval (288).
BIGQUERY = StoreSpec(key=STORE_NAME, label="BigQuery", kinds=frozenset({"bigquery"}), store_class=BigQueryStore,
                     publish_batch_size=1_000_000, hosts_sync_log=True)
