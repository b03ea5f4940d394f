"""Table plumbing shared by everything that writes to the warehouse: the store and the reporting exports.

Writes follow BigQuery's quotas (1,500 table modifications per table per day): rows arrive through ONE
load job into a private staging table and change the target in ONE statement. Table and column names come
from code; values are always query parameters or loaded data.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from sync_pipeline.model.canonical import format_timestamp, parse_timestamp
from sync_pipeline.stores.bigquery.merge import string_literal
from sync_pipeline.stores.bigquery.schema import SchemaMismatchError, ddl_type

STAGING_TTL = timedelta(hours=6)


@dataclass(frozen=True)
class KeyedTable:
    """A table whose rows are identified by `key`, so that writing the same rows again changes nothing.

    A merge inserts new keys and updates an existing row only when one of its `updatable` columns differs;
    `touched` columns (an export time, say) are rewritten with such an update but never cause one. A table
    with `partition_by`, a TIMESTAMP column a row keeps for life, is partitioned by its day and a merge reads
    only the days its rows fall in.
    """

    name: str
    key: str
    schema: tuple[bigquery.SchemaField, ...]
    updatable: tuple[str, ...] = ()
    touched: tuple[str, ...] = ()
    partition_by: str | None = None


class BigQueryTables:
    """One dataset's tables over a `google.cloud.bigquery.Client`, or a factory making one on first use
    (so that a resource can hand out stores before any connection is needed)."""

    def __init__(
        self,
        client: bigquery.Client | Callable[[], bigquery.Client],
        dataset: str,
        location: str | None = None,
    ) -> None:
        self._client_or_factory = client
        self._client: bigquery.Client | None = None
        self.dataset_id = dataset
        self.location = location

    @property
    def client(self) -> bigquery.Client:
        if self._client is None:
            factory = self._client_or_factory
            self._client = factory if isinstance(factory, bigquery.Client) else factory()
        return self._client

    def table_id(self, table: str) -> str:
        return f"{self.client.project}.{self.dataset_id}.{table}"

    # --- schema ---------------------------------------------------------------------------------------

    def ensure_dataset(self) -> None:
        dataset = bigquery.Dataset(f"{self.client.project}.{self.dataset_id}")
        if self.location:  # an explicit null location is a 500 on bqemulator
            dataset.location = self.location
        self.client.create_dataset(dataset, exists_ok=True)

    def ensure_table(
        self,
        name: str,
        schema: Iterable[bigquery.SchemaField],
        clustering: list[str],
        partition_by: str | None = None,
    ) -> bool:
        """Create the table when missing (True); add the columns new to an existing one, never retype a
        column, and give it the clustering asked for when it has another (BigQuery applies it to rows
        written from then on). Partitioning cannot change on an existing table: it stays as created.

        Raises `SchemaMismatchError` when an existing column has another type than `schema` says.
        """
        schema = list(schema)
        table_id = self.table_id(name)
        try:
            table = self.client.get_table(table_id)
        except NotFound:
            table = bigquery.Table(table_id, schema=schema)
            table.clustering_fields = clustering
            if partition_by:
                table.time_partitioning = bigquery.TimePartitioning(field=partition_by)
            self.client.create_table(table, exists_ok=True)
            return True
        if (table.clustering_fields or []) != clustering:
            table.clustering_fields = clustering
            table = self.client.update_table(table, ["clustering_fields"])
        found = {f.name: f for f in table.schema}
        for column in schema:
            existing = found.get(column.name)
            if existing is not None and ddl_type(existing) != ddl_type(column):
                raise SchemaMismatchError(name, column.name, ddl_type(existing), ddl_type(column))
        missing = [c for c in schema if c.name not in found]
        if missing:
            self._add_columns(table, missing)
        return False

    def _add_columns(self, table: bigquery.Table, columns: list[bigquery.SchemaField]) -> None:
        # One statement per column: bqemulator refuses several ALTER commands in one statement.
        for c in columns:
            self.run(f"ALTER TABLE `{table.project}.{table.dataset_id}.{table.table_id}` "
                     f"ADD COLUMN IF NOT EXISTS `{c.name}` {ddl_type(c)}")
        # bqemulator 1.4 alters the storage on ALTER TABLE but not the table metadata that the REST API
        # reports; a schema patch is a no-op on BigQuery (the columns are there) and fixes the emulator.
        table = self.client.get_table(table.reference)
        known = {f.name for f in table.schema}
        if any(c.name not in known for c in columns):
            table.schema = list(table.schema) + [c for c in columns if c.name not in known]
            self.client.update_table(table, ["schema"])

    # --- writes -----------------------------------------------------------------------------------------

    @contextmanager
    def staging_table(
        self, base: str, schema: list[bigquery.SchemaField], rows: Iterable[dict[str, Any]]
    ) -> Iterator[str]:
        """A private staging table filled by ONE load job, dropped afterwards; yields its id.

        One table per call (not one per target) so that concurrent runs never read each other's rows. The
        load is a resumable upload (`size=None`): the client's small-payload multipart upload sends
        `Content-Type: */*`, which bqemulator rejects, and a resumable one is as valid on BigQuery.
        """
        table = bigquery.Table(self.table_id(f"_staging_{base}_{uuid.uuid4().hex[:12]}"), schema=schema)
        table.expires = datetime.now(timezone.utc) + STAGING_TTL  # a crashed run leaves nothing for long
        table_id = str(table.reference)
        payload = b"\n".join(orjson.dumps(row) for row in rows)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=schema,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        self.client.create_table(table)
        try:
            self.client.load_table_from_file(
                io.BytesIO(payload), table_id, job_config=config, size=None, location=self.location
            ).result()
            yield table_id
        finally:
            self.client.delete_table(table_id, not_found_ok=True)

    def merge(self, table: KeyedTable, rows: Iterable[dict[str, Any]]) -> int:
        """MERGE rows into a keyed table (one load job, one statement); returns the rows changed.

        Values are converted to what a load job accepts for their column (see `_load_value`); columns a row
        lacks are NULL. Of two rows with one key the last wins: MERGE refuses two source rows for one
        target row. No rows, no job.
        """
        by_key = {str(row[table.key]): row for row in rows}
        if not by_key:
            return 0
        encoded = [{c.name: _load_value(c, row.get(c.name)) for c in table.schema} for row in by_key.values()]
        columns = [c.name for c in table.schema]
        changed_condition = " OR ".join(f"T.`{c}` IS DISTINCT FROM S.`{c}`" for c in table.updatable)
        update = (
            f"WHEN MATCHED AND ({changed_condition}) THEN UPDATE SET "
            + ", ".join(f"`{c}` = S.`{c}`" for c in (*table.updatable, *table.touched))
            if table.updatable
            else ""
        )
        with self.staging_table(table.name, list(table.schema), encoded) as staging:
            job = self.query(
                f"""MERGE `{self.table_id(table.name)}` AS T USING `{staging}` AS S
ON T.`{table.key}` = S.`{table.key}`{_partition_filter(table, encoded)}
{update}
WHEN NOT MATCHED BY TARGET THEN INSERT ({", ".join(f"`{c}`" for c in columns)})
  VALUES ({", ".join(f"S.`{c}`" for c in columns)})"""
            )
        return job.num_dml_affected_rows or 0

    # --- queries ----------------------------------------------------------------------------------------

    def query(self, sql: str, *params: bigquery.ScalarQueryParameter) -> bigquery.QueryJob:
        """Run a statement or script to completion; the job tells what DML it did."""
        job = self.client.query(
            sql, job_config=bigquery.QueryJobConfig(query_parameters=list(params)), location=self.location
        )
        job.result()
        return job

    def run(self, sql: str, *params: bigquery.ScalarQueryParameter) -> list[bigquery.Row]:
        """Run a query to completion and return its rows (the last statement's, for a script)."""
        return list(self.query(sql, *params).result())


def _partition_filter(table: KeyedTable, rows: list[dict[str, Any]]) -> str:
    """` AND` the target's partition column within the rows' range (a row with the same key has the same
    value), so that BigQuery reads only those days; nothing when a row has no value to bound it by."""
    if table.partition_by is None:
        return ""
    values = [row[table.partition_by] for row in rows]
    if any(v is None for v in values):
        return ""
    low, high = min(values, key=parse_timestamp), max(values, key=parse_timestamp)
    return (f" AND T.`{table.partition_by}` BETWEEN TIMESTAMP({string_literal(low)})"
            f" AND TIMESTAMP({string_literal(high)})")


def _load_value(column: bigquery.SchemaField, value: Any) -> Any:
    """A value in the JSON form a load job accepts for the column: JSON text for an object in a STRING
    column, a list for a REPEATED one (a comma-separated or JSON array string is split)."""
    if value is None:
        return [] if column.mode == "REPEATED" else None
    if column.mode == "REPEATED":
        if isinstance(value, str):
            value = orjson.loads(value) if value.startswith("[") else [v.strip() for v in value.split(",")]
        return [str(v) for v in value]
    match column.field_type:
        case "TIMESTAMP":
            return format_timestamp(parse_timestamp(value))
        case "INT64":
            return int(value)
        case "STRING" if isinstance(value, (dict, list)):
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return str(value)
