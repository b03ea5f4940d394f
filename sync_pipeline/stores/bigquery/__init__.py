"""BigQuery as the analytics target: the store (current-state tables and change history), the table
plumbing it shares with the reporting exports, its schemas, and the row digest both sides compute."""

from sync_pipeline.stores.bigquery.digest import row_digest, sql_row_text
from sync_pipeline.stores.bigquery.schema import SchemaMismatchError
from sync_pipeline.stores.bigquery.store import ApplyStats, BigQueryApplyResult, BigQueryStore
from sync_pipeline.stores.bigquery.tables import BigQueryTables, KeyedTable

__all__ = [
    "ApplyStats",
    "BigQueryApplyResult",
    "BigQueryStore",
    "BigQueryTables",
    "KeyedTable",
    "SchemaMismatchError",
    "row_digest",
    "sql_row_text",
]
