"""BigQuery as the analytics target: current-state tables, an append-only change history and the sync logs.

Writes follow BigQuery's quotas (1,500 table modifications per table per day): each `apply` is ONE load
job into a private staging table and ONE script that appends the history and runs ONE `MERGE` into the
entity table, inside a transaction. Table and column names come from the entity registry; values are
always query parameters or loaded data.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from google.api_core.exceptions import NotFound
from google.api_core.retry import Retry
from google.cloud import bigquery

from sync_pipeline.engine.records import ApplyResult, GoldenRecord
from sync_pipeline.model.canonical import (
    CanonicalValueError,
    canonical_record,
    content_hash,
    format_timestamp,
    parse_timestamp,
)
from sync_pipeline.model.entities import ENTITIES, Entity, FieldType
from sync_pipeline.model.entities import entity as entity_by_name
from sync_pipeline.stores.base import ConsistencyReport, Health

SF = bigquery.SchemaField

# BigQuery type of each canonical field type.
BQ_TYPES: dict[FieldType, str] = {
    FieldType.UUID: "STRING",
    FieldType.TEXT: "STRING",
    FieldType.URL: "STRING",
    FieldType.EMAIL: "STRING",
    FieldType.ENUM: "STRING",
    FieldType.INTEGER: "INT64",
    FieldType.NUMERIC: "NUMERIC",
    FieldType.BOOLEAN: "BOOL",
    FieldType.TIMESTAMP: "TIMESTAMP",
}
# The REST API reports legacy type names; compare in standard SQL names.
_TYPE_ALIASES = {"INTEGER": "INT64", "BOOLEAN": "BOOL", "FLOAT": "FLOAT64", "DECIMAL": "NUMERIC"}

SYNC_COLUMNS = (
    SF("hub_version", "INT64", mode="REQUIRED"),
    SF("origin_store", "STRING"),
    SF("origin_modified_at", "TIMESTAMP"),
    SF("synced_at", "TIMESTAMP"),
)
HISTORY_TABLE = "change_history"
HISTORY_SCHEMA = (
    SF("entity", "STRING", mode="REQUIRED"),
    SF("record_id", "STRING", mode="REQUIRED"),
    SF("version", "INT64", mode="REQUIRED"),
    SF("op", "STRING", mode="REQUIRED", description="insert, update or delete"),
    SF("origin_store", "STRING"),
    SF("origin_modified_at", "TIMESTAMP"),
    SF("synced_at", "TIMESTAMP", mode="REQUIRED"),
)


@dataclass(frozen=True)
class LogTable:
    """A sync log table: rows are de-duplicated on `key`; `updatable` columns may change on re-export."""

    name: str
    key: str
    schema: tuple[bigquery.SchemaField, ...]
    updatable: tuple[str, ...] = ()


LOG_TABLES: dict[str, LogTable] = {
    t.name: t
    for t in (
        LogTable(
            "sync_runs",
            key="run_id",
            schema=(
                SF("run_id", "STRING", mode="REQUIRED"),
                SF("started_at", "TIMESTAMP"),
                SF("finished_at", "TIMESTAMP"),
                SF("status", "STRING"),
                SF("trigger", "STRING"),
                SF("counts", "STRING", description="JSON object"),
                SF("exported_at", "TIMESTAMP"),
            ),
            # A run exported while in progress is completed by a later export.
            updatable=("finished_at", "status", "counts"),
        ),
        LogTable(
            "sync_record_outcomes",
            key="outcome_id",
            schema=(
                SF("outcome_id", "STRING", mode="REQUIRED", description="The hub's id, or a hash of the row"),
                SF("run_id", "STRING"),
                SF("store", "STRING"),
                SF("entity", "STRING"),
                SF("record_id", "STRING"),
                SF("stage", "STRING"),
                SF("outcome", "STRING"),
                SF("version", "INT64"),
                SF("detail", "STRING"),
                SF("at", "TIMESTAMP"),
                SF("exported_at", "TIMESTAMP"),
            ),
        ),
        LogTable(
            "sync_conflicts",
            key="id",
            schema=(
                SF("id", "STRING", mode="REQUIRED"),
                SF("entity", "STRING"),
                SF("record_id", "STRING"),
                SF("detected_at", "TIMESTAMP"),
                SF("run_id", "STRING"),
                SF("winner_store", "STRING"),
                SF("loser_store", "STRING"),
                SF("resolution", "STRING"),
                SF("winning_version", "INT64"),
                SF("differing_fields", "STRING", mode="REPEATED"),
                SF("golden_side", "STRING", description="JSON object"),
                SF("incoming_side", "STRING", description="JSON object"),
                SF("exported_at", "TIMESTAMP"),
            ),
        ),
    )
}
_OUTCOME_KEY_COLUMNS = ("run_id", "store", "entity", "record_id", "stage", "outcome", "version")

STAGING_TTL = timedelta(hours=6)
_NUMERIC_QUANTUM = Decimal(1).scaleb(-9)  # BigQuery NUMERIC keeps 9 fractional digits
_TIMESTAMP_FORMAT = "%FT%H:%M:%E6SZ"
_NULL_TOKEN = "~"  # never produced by an encoded non-null value
_CHECKSUM_HEX_DIGITS = 15  # 60 bits: always a positive INT64, so BIT_XOR cannot overflow


class SchemaMismatchError(RuntimeError):
    """An existing BigQuery column has a type other than the one the registry defines."""

    def __init__(self, table: str, column: str, found: str, expected: str) -> None:
        super().__init__(
            f"BigQuery table {table!r}: column {column!r} is {found}, the registry expects {expected}; "
            "refusing to coerce it (migrate the column by hand)"
        )
        self.table, self.column, self.found, self.expected = table, column, found, expected


@dataclass
class ApplyStats:
    """What one `apply` cost and did; the quota-relevant figures are `load_jobs` and `dml_statements`."""

    load_jobs: int = 0
    dml_statements: int = 0  # MERGE + history INSERT
    merge_statements: int = 0
    rows_loaded: int = 0  # after de-duplication
    duplicates_dropped: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    stale: int = 0  # the warehouse already had this version or a newer one
    already_absent: int = 0  # tombstones of rows the warehouse never had
    history_rows: int = 0
    seconds: float = 0.0

    def add(self, other: ApplyStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class BigQueryApplyResult(ApplyResult):
    stats: ApplyStats = field(default_factory=ApplyStats)


# --- the row digest, built the same way in SQL and in Python -----------------------------------------


def _sql_encoded(column: str, bq_type: str) -> str:
    """SQL text of one column, formatted explicitly so the emulator and BigQuery render it alike."""
    col = f"`{column}`"
    match bq_type:
        case "STRING":  # length-prefixed so that separators inside values cannot collide
            text = f"CONCAT(CAST(CHAR_LENGTH({col}) AS STRING), ':', {col})"
        case "INT64":
            text = f"CAST({col} AS STRING)"
        case "BOOL":
            text = f"IF({col}, 't', 'f')"
        case "TIMESTAMP":
            text = f"FORMAT_TIMESTAMP('{_TIMESTAMP_FORMAT}', {col}, 'UTC')"
        case "NUMERIC":
            # Integer part and nano-units as INT64: exact for |x| < 9.2e18 (an overflow errors, loudly).
            text = (
                f"CONCAT(CAST(CAST(TRUNC({col}) AS INT64) AS STRING), ':', "
                f"CAST(CAST(({col} - TRUNC({col})) * 1000000000 AS INT64) AS STRING))"
            )
        case _:
            raise AssertionError(f"no digest encoding for {bq_type}")
    return f"IFNULL({text}, '{_NULL_TOKEN}')"


def _py_encoded(value: Any, bq_type: str) -> str:
    if value is None:
        return _NULL_TOKEN
    match bq_type:
        case "STRING":
            return f"{len(value)}:{value}"
        case "INT64":
            return str(int(value))
        case "BOOL":
            return "t" if value else "f"
        case "TIMESTAMP":
            return format_timestamp(parse_timestamp(value))
        case "NUMERIC":
            number = _numeric(value)
            whole = int(number)  # truncates toward zero, like TRUNC
            return f"{whole}:{int((number - whole).scaleb(9))}"
    raise AssertionError(f"no digest encoding for {bq_type}")


def _numeric(value: Any) -> Decimal:
    """A value as BigQuery NUMERIC stores it (9 fractional digits, half away from zero)."""
    return Decimal(str(value)).quantize(_NUMERIC_QUANTUM, rounding=ROUND_HALF_UP)


def _digest_columns(entity: Entity) -> list[tuple[str, str]]:
    return [("id", "STRING"), ("hub_version", "INT64")] + [(f.name, BQ_TYPES[f.type]) for f in entity.fields]


def sql_row_text(entity: Entity) -> str:
    """SQL text of a row's explicitly formatted columns; its SHA-256 equals `row_digest`."""
    return "CONCAT(" + ", '|', ".join(_sql_encoded(c, t) for c, t in _digest_columns(entity)) + ")"


def row_digest(entity: Entity, record_id: str, version: int, data: dict[str, Any]) -> str:
    """The hex SHA-256 of a row's explicitly formatted columns, equal to the warehouse's computation."""
    values = {"id": record_id, "hub_version": version, **data}
    text = "|".join(_py_encoded(values.get(c), t) for c, t in _digest_columns(entity))
    return hashlib.sha256(text.encode()).hexdigest()


def _fold(digests: Iterable[str]) -> str:
    """XOR of the first 60 bits of each digest, as SQL's BIT_XOR computes it; hex, 15 digits."""
    acc = 0
    for digest in digests:
        acc ^= int(digest[:_CHECKSUM_HEX_DIGITS], 16)
    return f"{acc:0{_CHECKSUM_HEX_DIGITS}x}"


# --- the store -------------------------------------------------------------------------------------------


class BigQueryStore:
    """BigQuery target store over a `google.cloud.bigquery.Client` (or a factory making one)."""

    name = "bigquery"
    # Everything unseen in one apply: one load job and one MERGE per table per run, far inside
    # BigQuery's 1,500 table modifications a day at a 5-minute interval (288).
    publish_batch_size = 1_000_000

    def __init__(
        self,
        client: bigquery.Client | Callable[[], bigquery.Client],
        dataset: str,
        *,
        location: str | None = None,
        entities: Iterable[Entity] = ENTITIES,
        check_deadline: float = 20.0,
    ) -> None:
        self._client_or_factory = client
        self._client: bigquery.Client | None = None
        self.dataset_id = dataset
        self.location = location
        self.entities = {e.name: e for e in entities}
        self._check_retry = Retry(deadline=check_deadline)  # a health check must not hang for minutes
        self.last_apply_stats = ApplyStats()
        self.total_stats = ApplyStats()
        self._schema_ready = False

    @property
    def client(self) -> bigquery.Client:
        if self._client is None:
            factory = self._client_or_factory
            self._client = factory if isinstance(factory, bigquery.Client) else factory()
        return self._client

    def _table_id(self, table: str) -> str:
        return f"{self.client.project}.{self.dataset_id}.{table}"

    def _entity(self, entity: Entity | str) -> Entity:
        return entity if isinstance(entity, Entity) else self.entities.get(entity) or entity_by_name(entity)

    # --- schema ---------------------------------------------------------------------------------------

    def entity_schema(self, entity: Entity) -> list[bigquery.SchemaField]:
        return [
            SF("id", "STRING", mode="REQUIRED"),
            *(SF(f.name, BQ_TYPES[f.type], description=f.description or None) for f in entity.fields),
            *SYNC_COLUMNS,
        ]

    def staging_schema(self, entity: Entity) -> list[bigquery.SchemaField]:
        """The entity's columns plus the tombstone flag; the run's values ride along as columns too."""
        return [
            *self.entity_schema(entity),
            SF("deleted", "BOOL", mode="REQUIRED"),
            SF("entity", "STRING", mode="REQUIRED"),
        ]

    def _ensure_ready(self) -> None:
        """Run `ensure_schema` once per store object, so callers never see a missing table or column."""
        if not self._schema_ready:
            self.ensure_schema()

    def ensure_schema(self) -> None:
        """Create the dataset and tables when missing; add registry columns new to an existing table."""
        dataset = bigquery.Dataset(f"{self.client.project}.{self.dataset_id}")
        if self.location:  # an explicit null location is a 500 on bqemulator
            dataset.location = self.location
        self.client.create_dataset(dataset, exists_ok=True)
        for ent in self.entities.values():
            self._ensure_table(ent.name, self.entity_schema(ent), clustering=["id"])
        self._ensure_table(
            HISTORY_TABLE, list(HISTORY_SCHEMA), clustering=["entity", "record_id"], partition_by="synced_at"
        )
        for log in LOG_TABLES.values():
            self._ensure_table(log.name, list(log.schema), clustering=[log.key])
        self._schema_ready = True

    def _ensure_table(
        self,
        name: str,
        schema: list[bigquery.SchemaField],
        clustering: list[str],
        partition_by: str | None = None,
    ) -> None:
        table_id = self._table_id(name)
        try:
            table = self.client.get_table(table_id)
        except NotFound:
            table = bigquery.Table(table_id, schema=schema)
            table.clustering_fields = clustering
            if partition_by:
                table.time_partitioning = bigquery.TimePartitioning(field=partition_by)
            self.client.create_table(table, exists_ok=True)
            return
        found = {f.name: f for f in table.schema}
        for column in schema:
            existing = found.get(column.name)
            if existing is not None and _ddl_type(existing) != _ddl_type(column):
                raise SchemaMismatchError(name, column.name, _ddl_type(existing), _ddl_type(column))
        missing = [c for c in schema if c.name not in found]
        if missing:
            self._add_columns(table, missing)

    def _add_columns(self, table: bigquery.Table, columns: list[bigquery.SchemaField]) -> None:
        additions = ", ".join(f"ADD COLUMN IF NOT EXISTS `{c.name}` {_ddl_type(c)}" for c in columns)
        self._run(f"ALTER TABLE `{table.project}.{table.dataset_id}.{table.table_id}` {additions}")
        # bqemulator 1.4 alters the storage on ALTER TABLE but not the table metadata that the REST API
        # reports; a schema patch is a no-op on BigQuery (the columns are there) and fixes the emulator.
        table = self.client.get_table(table.reference)
        known = {f.name for f in table.schema}
        if any(c.name not in known for c in columns):
            table.schema = list(table.schema) + [c for c in columns if c.name not in known]
            self.client.update_table(table, ["schema"])

    # --- writes -----------------------------------------------------------------------------------------

    def apply(self, entity: Entity | str, records: list[GoldenRecord]) -> BigQueryApplyResult:
        """Publish golden records: one load job, one transaction of history INSERT + MERGE.

        Only newer hub versions overwrite; tombstones delete; a replay changes nothing. A failure raises
        and leaves the tables untouched (the script is one transaction), so the run can simply be retried.
        """
        ent = self._entity(entity)
        self._ensure_ready()
        started = time.monotonic()
        stats = ApplyStats()
        result = BigQueryApplyResult(stats=stats)
        if records:
            latest = _latest_per_id(records)
            stats.duplicates_dropped = len(records) - len(latest)
            stats.rows_loaded = len(latest)
            synced_at = datetime.now(timezone.utc)
            staged = (_staging_row(ent, record, synced_at) for record in latest)
            with self._staging_table(ent.name, self.staging_schema(ent), staged) as staging:
                stats.load_jobs += 1
                outcome = self._merge_entity(ent, staging)
            stats.dml_statements += 2
            stats.merge_statements += 1
            counts = {op: n for op, n, _ in outcome}
            stats.inserted, stats.updated = counts.get("insert", 0), counts.get("update", 0)
            stats.deleted, stats.stale = counts.get("delete", 0), counts.get("stale", 0)
            stats.already_absent = counts.get("absent", 0)
            stats.history_rows = stats.inserted + stats.updated + stats.deleted
            stale_ids = {rid for op, _, ids in outcome if op == "stale" for rid in ids}
            for record in latest:
                (result.stale if record.record_id in stale_ids else result.applied).append(record.record_id)
        stats.seconds = time.monotonic() - started
        self.last_apply_stats = stats
        self.total_stats.add(stats)
        return result

    def _merge_entity(self, ent: Entity, staging: str) -> list[tuple[str, int, list[str]]]:
        target = self._table_id(ent.name)
        history = self._table_id(HISTORY_TABLE)
        data_columns = [f.name for f in ent.fields] + ["hub_version", "origin_store", "origin_modified_at"]
        insert_columns = ["id", *data_columns, "synced_at"]
        update_set = ", ".join(f"`{c}` = S.`{c}`" for c in [*data_columns, "synced_at"])
        insert_values = ", ".join(f"S.`{c}`" for c in insert_columns)
        # The plan classifies each incoming row once, before anything changes, so that the history gets
        # exactly the changes the MERGE makes. A row absent from the table is only inserted when its
        # version is newer than the last delete recorded for it: a late, older upsert cannot resurrect it.
        # The run's values (entity, synced_at) are staged columns, not query parameters: bqemulator 1.4
        # drops query parameters of multi-statement scripts. The temp table's name is unique because
        # bqemulator keeps temp tables after the script ends (BigQuery scopes them to the script).
        plan = f"_plan_{uuid.uuid4().hex[:12]}"
        script = f"""
BEGIN TRANSACTION;
CREATE TEMP TABLE {plan} AS
WITH last_delete AS (
  SELECT H.record_id, MAX(H.version) AS version
  FROM `{history}` AS H JOIN `{staging}` AS S ON H.entity = S.entity AND H.record_id = S.id
  WHERE H.op = 'delete'
  GROUP BY H.record_id
)
SELECT S.*, CASE
    WHEN T.id IS NOT NULL AND S.hub_version <= T.hub_version THEN 'stale'
    WHEN T.id IS NULL AND S.hub_version <= IFNULL(D.version, 0) THEN 'stale'
    WHEN T.id IS NULL AND S.deleted THEN 'absent'
    WHEN S.deleted THEN 'delete'
    WHEN T.id IS NULL THEN 'insert'
    ELSE 'update'
  END AS op
FROM `{staging}` AS S
LEFT JOIN `{target}` AS T ON T.id = S.id
LEFT JOIN last_delete AS D ON D.record_id = S.id;
INSERT INTO `{history}` (entity, record_id, version, op, origin_store, origin_modified_at, synced_at)
SELECT entity, id, hub_version, op, origin_store, origin_modified_at, synced_at
FROM {plan} WHERE op IN ('insert', 'update', 'delete');
MERGE `{target}` AS T
USING (SELECT * FROM {plan} WHERE op IN ('insert', 'update', 'delete')) AS S
ON T.id = S.id
WHEN MATCHED AND S.op = 'delete' THEN DELETE
WHEN MATCHED AND S.op = 'update' THEN UPDATE SET {update_set}
WHEN NOT MATCHED BY TARGET AND S.op = 'insert' THEN
  INSERT ({", ".join(f"`{c}`" for c in insert_columns)}) VALUES ({insert_values});
COMMIT TRANSACTION;
SELECT op, COUNT(*) AS n, ARRAY_AGG(IF(op = 'stale', id, NULL) IGNORE NULLS) AS stale_ids
FROM {plan} GROUP BY op;
"""
        rows = self._run(script)
        return [(row["op"], row["n"], list(row["stale_ids"] or [])) for row in rows]

    def export_sync_logs(
        self, runs: list[dict[str, Any]], outcomes: list[dict[str, Any]], conflicts: list[dict[str, Any]]
    ) -> dict[str, int]:
        """Append the hub's run, record outcome and conflict rows; a retried export changes nothing.

        Rows are de-duplicated on their key (run_id, outcome id or a hash of the outcome, conflict id); a
        run exported again with a new status or counts is updated. Returns rows changed per table.
        """
        self._ensure_ready()
        exported_at = datetime.now(timezone.utc)
        changed: dict[str, int] = {}
        for log, rows in (
            (LOG_TABLES["sync_runs"], runs),
            (LOG_TABLES["sync_record_outcomes"], [_with_outcome_id(o) for o in outcomes]),
            (LOG_TABLES["sync_conflicts"], conflicts),
        ):
            if rows:
                changed[log.name] = self._merge_log(log, rows, exported_at)
        return changed

    def _merge_log(self, log: LogTable, rows: list[dict[str, Any]], exported_at: datetime) -> int:
        by_key = {str(row[log.key]): row for row in rows}  # the last copy of a key wins
        exported = {"exported_at": format_timestamp(exported_at)}
        encoded = (
            {**{c.name: _log_value(c, row.get(c.name)) for c in log.schema}, **exported}
            for row in by_key.values()
        )
        columns = [c.name for c in log.schema]
        changed_condition = " OR ".join(f"T.`{c}` IS DISTINCT FROM S.`{c}`" for c in log.updatable)
        update = (
            f"WHEN MATCHED AND ({changed_condition}) THEN UPDATE SET "
            + ", ".join(f"`{c}` = S.`{c}`" for c in (*log.updatable, "exported_at"))
            if log.updatable
            else ""
        )
        with self._staging_table(log.name, list(log.schema), encoded) as staging:
            job = self._query(
                f"""MERGE `{self._table_id(log.name)}` AS T USING `{staging}` AS S
ON T.`{log.key}` = S.`{log.key}`
{update}
WHEN NOT MATCHED BY TARGET THEN INSERT ({", ".join(f"`{c}`" for c in columns)})
  VALUES ({", ".join(f"S.`{c}`" for c in columns)})"""
            )
        return job.num_dml_affected_rows or 0

    @contextmanager
    def _staging_table(
        self, base: str, schema: list[bigquery.SchemaField], rows: Iterable[dict[str, Any]]
    ) -> Iterator[str]:
        """A private staging table filled by ONE load job, dropped afterwards.

        One table per call (not one per entity) so that concurrent runs never read each other's rows. The
        load is a resumable upload (`size=None`): the client's small-payload multipart upload sends
        `Content-Type: */*`, which bqemulator rejects, and a resumable one is as valid on BigQuery.
        """
        table = bigquery.Table(self._table_id(f"_staging_{base}_{uuid.uuid4().hex[:12]}"), schema=schema)
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

    # --- reads --------------------------------------------------------------------------------------------

    def rows(self, entity: Entity | str) -> list[dict[str, Any]]:
        """Every row with the canonical columns, as stored, ordered by id."""
        ent = self._entity(entity)
        self._ensure_ready()
        columns = ", ".join(f"`{c}`" for c in ["id", *ent.field_names])
        rows = self._run(f"SELECT {columns} FROM `{self._table_id(ent.name)}` ORDER BY id")
        return [dict(row.items()) for row in rows]

    def inventory(self, entity: Entity | str) -> dict[str, str]:
        """Record id -> canonical content hash of every row, computed from the values read back."""
        ent = self._entity(entity)
        out: dict[str, str] = {}
        for row in self.rows(ent):
            try:
                out[row["id"]] = content_hash(canonical_record(ent, row))
            except CanonicalValueError as exc:  # a value edited by hand into something invalid
                out[row["id"]] = f"invalid: {exc}"
        return out

    def compare_with_hub(
        self, entity: Entity | str, hub_records: dict[str, tuple[int, dict[str, Any] | None]]
    ) -> ConsistencyReport:
        """Compare the table with the hub's records (id -> (version, canonical data or None if deleted)).

        Counts and an XOR checksum of per-row SHA-256 digests are computed in the warehouse over
        explicitly formatted columns and, identically, in Python; the per-id digests are fetched only
        when the totals differ, to name the missing, extra and mismatched ids.
        """
        ent = self._entity(entity)
        self._ensure_ready()
        table = f"`{self._table_id(ent.name)}`"
        row_hash = f"TO_HEX(SHA256({sql_row_text(ent)}))"
        hub = {
            rid: row_digest(ent, rid, version, data)
            for rid, (version, data) in hub_records.items()
            if data is not None
        }
        totals = self._run(
            f"SELECT COUNT(*) AS n,"
            f" BIT_XOR(CAST(CONCAT('0x', SUBSTR(h, 1, {_CHECKSUM_HEX_DIGITS})) AS INT64)) AS x"
            f" FROM (SELECT {row_hash} AS h FROM {table})"
        )[0]
        report = ConsistencyReport(
            entity=ent.name,
            hub_rows=len(hub),
            store_rows=totals["n"],
            hub_checksum=_fold(hub.values()),
            store_checksum=f"{totals['x'] or 0:0{_CHECKSUM_HEX_DIGITS}x}",
        )
        if report.hub_rows == report.store_rows and report.hub_checksum == report.store_checksum:
            return report
        store: dict[str, str] = {}
        for row in self._run(f"SELECT id, {row_hash} AS h FROM {table}"):
            if row["id"] in store:
                report.duplicated.append(row["id"])
            store[row["id"]] = row["h"]
        report.missing = sorted(hub.keys() - store.keys())
        report.extra = sorted(store.keys() - hub.keys())
        report.mismatched = sorted(rid for rid in hub.keys() & store.keys() if hub[rid] != store[rid])
        report.duplicated.sort()
        return report

    def api_stats(self) -> dict[str, Any]:
        """Jobs this store ran: the figures BigQuery's table-modification quota counts."""
        return {"load_jobs": self.total_stats.load_jobs, "merge_statements": self.total_stats.merge_statements,
                "dml_statements": self.total_stats.dml_statements}

    def check(self) -> Health:
        """Reachable, dataset present, a query runs."""
        project = self.client.project
        try:
            self.client.get_dataset(f"{project}.{self.dataset_id}", retry=self._check_retry)
        except NotFound:
            return Health(False, f"dataset {self.dataset_id!r} does not exist", {"project": project})
        except Exception as exc:  # any failure to reach BigQuery is what this check reports
            return Health(False, f"BigQuery unreachable: {exc}", {"project": self.client.project})
        started = time.monotonic()
        try:
            job = self.client.query("SELECT 1 AS ok", location=self.location, retry=self._check_retry)
            ok = list(job.result(retry=self._check_retry))[0]["ok"] == 1
        except Exception as exc:
            return Health(False, f"query failed: {exc}", {"project": self.client.project})
        return Health(
            ok,
            "ok" if ok else "SELECT 1 returned an unexpected value",
            {
                "project": self.client.project,
                "dataset": self.dataset_id,
                "query_seconds": round(time.monotonic() - started, 3),
            },
        )

    # --- plumbing -----------------------------------------------------------------------------------------

    def _query(self, sql: str, *params: bigquery.ScalarQueryParameter) -> bigquery.QueryJob:
        job = self.client.query(
            sql, job_config=bigquery.QueryJobConfig(query_parameters=list(params)), location=self.location
        )
        job.result()
        return job

    def _run(self, sql: str, *params: bigquery.ScalarQueryParameter) -> list[bigquery.Row]:
        return list(self._query(sql, *params).result())


def _std_type(name: str) -> str:
    return _TYPE_ALIASES.get(name.upper(), name.upper())


def _ddl_type(column: bigquery.SchemaField) -> str:
    base = _std_type(column.field_type)
    return f"ARRAY<{base}>" if column.mode == "REPEATED" else base


def _latest_per_id(records: list[GoldenRecord]) -> list[GoldenRecord]:
    """Keep the highest version of each record: BigQuery's MERGE rejects two source rows per target row."""
    latest: dict[str, GoldenRecord] = {}
    for record in records:
        kept = latest.get(record.record_id)
        if kept is None or record.version > kept.version:
            latest[record.record_id] = record
    return list(latest.values())


def _staging_row(ent: Entity, record: GoldenRecord, synced_at: datetime) -> dict[str, Any]:
    deleted = record.deleted or record.data is None
    data = {} if deleted else record.data
    row: dict[str, Any] = {"id": record.record_id}
    for f in ent.fields:
        value = data.get(f.name)
        # NUMERIC is loaded pre-rounded so that the checksum's Python side sees the stored value.
        if f.type is FieldType.NUMERIC and value is not None:
            value = format(_numeric(value), "f")
        row[f.name] = value
    row["hub_version"] = record.version
    row["origin_store"] = record.origin_store
    modified_at = record.origin_modified_at
    row["origin_modified_at"] = format_timestamp(modified_at) if modified_at else None
    row["synced_at"] = format_timestamp(synced_at)
    row["deleted"] = deleted
    row["entity"] = ent.name
    return row


def _with_outcome_id(outcome: dict[str, Any]) -> dict[str, Any]:
    """The outcome with `outcome_id`: the hub's id when it has one, else a hash of what identifies it."""
    if outcome.get("outcome_id") or outcome.get("id"):
        return {**outcome, "outcome_id": str(outcome.get("outcome_id") or outcome["id"])}
    at = outcome.get("at")
    identity = [str(outcome.get(c)) for c in _OUTCOME_KEY_COLUMNS]
    identity.append(format_timestamp(parse_timestamp(at)) if at else None)
    key = orjson.dumps(identity)
    return {**outcome, "outcome_id": hashlib.sha256(key).hexdigest()}


def _log_value(column: bigquery.SchemaField, value: Any) -> Any:
    """A log value in the JSON form a load job accepts for the column."""
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

