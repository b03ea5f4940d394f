"""BigQuery as the sync knows it: a target (never a source) that also hosts the sync's own run log."""

from sync_pipeline.stores.base import StoreSpec
from sync_pipeline.stores.bigquery.store import STORE_NAME, BigQueryStore

# Records per publish page: one load job (into its own staging table) and one MERGE each, so memory stays
# bounded by the page whatever the backlog. A 1M first sync is 50 pages; an ordinary run's changes are one,
# so a table takes about 288 MERGEs a day at a 5-minute interval, inside BigQuery's 1,500 modifications.
PUBLISH_PAGE = 20_000
BIGQUERY = StoreSpec(key=STORE_NAME, label="BigQuery", kinds=frozenset({"bigquery"}),
                     store_class=BigQueryStore, publish_batch_size=PUBLISH_PAGE, hosts_sync_log=True)
