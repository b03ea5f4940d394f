"""BigQuery as the analytics target: current-state tables and an append-only change history.

Each `apply` (one page of what the hub has to publish) is ONE load job into a private staging table and
ONE script, inside a transaction, that appends the page's changes to the day-partitioned history and runs
ONE `MERGE` into the entity table, every statement reading only the page's keys (see `merge.py`). Table
and column names come from the entity registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from google.api_core.exceptions import BadRequest, NotFound
from google.api_core.retry import Retry
from google.cloud import bigquery

from sync_pipeline.engine.records import ApplyResult, GoldenRecord
from sync_pipeline.model.canonical import (
    CanonicalValueError,
    canonical_record,
    content_hash,
    format_timestamp,
)
from sync_pipeline.model.entities import Entity, FieldType
from sync_pipeline.model.entities import entity as entity_by_name
from sync_pipeline.stores.base import ConsistencyReport, Health
from sync_pipeline.stores.bigquery.limits import LIMITS
from sync_pipeline.stores.bigquery.merge import TOMBSTONES_TABLE, publish_script, tombstones_backfill
from sync_pipeline.stores.bigquery.digest import checksum_hex, fold, row_digest, sql_fold, sql_row_digest
from sync_pipeline.stores.bigquery.schema import (
    HISTORY_SCHEMA,
    HISTORY_TABLE,
    TOMBSTONES_SCHEMA,
    bq_numeric,
    entity_schema,
    staging_schema,
    warehouse_entities,
    warehouse_table,
)
from sync_pipeline.stores.bigquery.tables import BigQueryTables
from sync_pipeline.stores.limits import ValueLimit, refusals

STORE_NAME = "bigquery"
# A batch failing with these is refused for its data (BigQuery's 400, or a value the load's JSON cannot
# encode): it is split to find the records at fault. Anything else (an outage) fails the batch as before.
_REFUSED_BATCH = (BadRequest, TypeError, ValueError, ArithmeticError)


@dataclass
class ApplyStats:
    """What one `apply` cost and did; the quota-relevant figures are `load_jobs` and `dml_statements`."""

    load_jobs: int = 0
    dml_statements: int = 0  # history INSERT, MERGE into the entity table, MERGE into the tombstones
    merge_statements: int = 0  # into the entity table
    rows_loaded: int = 0  # after de-duplication
    duplicates_dropped: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    stale: int = 0  # the warehouse already had this version or a newer one
    already_absent: int = 0  # tombstones of rows the warehouse never had
    history_rows: int = 0
    refused: int = 0  # records not written: beyond a declared limit, or refused by BigQuery
    split_batches: int = 0  # batches BigQuery refused, split to find the records at fault
    seconds: float = 0.0

    def add(self, other: ApplyStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class BigQueryApplyResult(ApplyResult):
    stats: ApplyStats = field(default_factory=ApplyStats)


class BigQueryStore:
    """BigQuery target store over a `google.cloud.bigquery.Client` (or a factory making one)."""

    name = STORE_NAME

    def __init__(
        self,
        client: bigquery.Client | Callable[[], bigquery.Client],
        dataset: str,
        *,
        location: str | None = None,
        entities: Iterable[Entity] | None = None,  # default: those the configuration's warehouse carries
        check_deadline: float = 20.0,
        limits: Iterable[ValueLimit] = LIMITS,
    ) -> None:
        self._tables = BigQueryTables(client, dataset, location)
        self.limits = tuple(limits)
        self.entities = {e.name: e for e in (warehouse_entities() if entities is None else entities)}
        self._check_retry = Retry(deadline=check_deadline)  # a health check must not hang for minutes
        self.last_apply_stats = ApplyStats()
        self.total_stats = ApplyStats()
        self._installed = False

    @property
    def tables(self) -> BigQueryTables:
        """The dataset's table plumbing, for what else the warehouse receives (the sync log)."""
        return self._tables

    @property
    def client(self) -> bigquery.Client:
        return self._tables.client

    @property
    def dataset_id(self) -> str:
        return self._tables.dataset_id

    def _entity(self, entity: Entity | str) -> Entity:
        return entity if isinstance(entity, Entity) else self.entities.get(entity) or entity_by_name(entity)

    # --- schema ---------------------------------------------------------------------------------------

    def install(self) -> None:
        """Create the dataset and tables when missing; add registry columns new to an existing table."""
        self._tables.ensure_dataset()
        for ent in self.entities.values():
            self._tables.ensure_table(warehouse_table(ent), entity_schema(ent), clustering=["id"])
        history_is_new = self._tables.ensure_table(
            HISTORY_TABLE, HISTORY_SCHEMA, clustering=["entity", "record_id"], partition_by="synced_at"
        )
        tombstones_are_new = self._tables.ensure_table(
            TOMBSTONES_TABLE, TOMBSTONES_SCHEMA, clustering=["entity", "record_id"]
        )
        if tombstones_are_new and not history_is_new:  # a dataset written before the tombstones existed
            self._tables.query(tombstones_backfill(self._tables.table_id(HISTORY_TABLE),
                                                   self._tables.table_id(TOMBSTONES_TABLE)))
        self._installed = True

    def _ensure_installed(self) -> None:
        """Run `install` once per store object, so callers never see a missing table or column."""
        if not self._installed:
            self.install()

    # --- writes -----------------------------------------------------------------------------------------

    def apply(self, entity: Entity | str, records: Sequence[GoldenRecord]) -> BigQueryApplyResult:
        """Publish one page of golden records: one load job, one transaction (history INSERT, MERGE).

        Only newer hub versions overwrite; tombstones delete; a replay changes nothing. A record with a
        value beyond BigQuery's types is not sent, and a batch BigQuery refuses for its data is split until
        the refused records stand alone: both come back in `failed`, and every other record is written.
        Any other failure raises and leaves the tables untouched (the script is one transaction), so the
        run can simply be retried.
        """
        ent = self._entity(entity)
        self._ensure_installed()
        started = time.monotonic()
        stats = ApplyStats()
        result = BigQueryApplyResult(stats=stats)
        if records:
            latest = _latest_per_id(records)
            stats.duplicates_dropped = len(records) - len(latest)
            result.failed.update(refusals(self.limits, ent, latest))
            pending = [[g for g in latest if g.record_id not in result.failed]]
            while pending:
                part = pending.pop()
                try:
                    self._write(ent, part, result)
                except _REFUSED_BATCH as exc:
                    if len(part) == 1:
                        result.failed[part[0].record_id] = exc
                    else:
                        stats.split_batches += 1
                        middle = len(part) // 2
                        pending += [part[middle:], part[:middle]]  # the first half is written first
            stats.refused = len(result.failed)
            stats.history_rows = stats.inserted + stats.updated + stats.deleted
        stats.seconds = time.monotonic() - started
        self.last_apply_stats = stats
        self.total_stats.add(stats)
        return result

    def _write(self, ent: Entity, records: list[GoldenRecord], result: BigQueryApplyResult) -> None:
        """One load job and one MERGE script for records with one row each; adds what they did to `result`."""
        if not records:
            return
        stats = result.stats
        synced_at = datetime.now(timezone.utc)
        staged = [_staging_row(ent, record, synced_at) for record in records]
        with self._tables.staging_table(ent.name, staging_schema(ent), staged) as staging:
            stats.load_jobs += 1
            outcome = self._merge_entity(ent, staging, [record.record_id for record in records])
        stats.dml_statements += 3
        stats.merge_statements += 1
        stats.rows_loaded += len(records)
        counts = {op: n for op, n, _ in outcome}
        stats.inserted += counts.get("insert", 0)
        stats.updated += counts.get("update", 0)
        stats.deleted += counts.get("delete", 0)
        stats.stale += counts.get("stale", 0)
        stats.already_absent += counts.get("absent", 0)
        stale_ids = {rid for op, _, ids in outcome if op == "stale" for rid in ids}
        for record in records:
            (result.stale if record.record_id in stale_ids else result.applied).append(record.record_id)

    def _merge_entity(self, ent: Entity, staging: str, keys: list[str]) -> list[tuple[str, int, list[str]]]:
        table_id = self._tables.table_id
        script = publish_script(ent, table_id(warehouse_table(ent)), table_id(HISTORY_TABLE),
                                table_id(TOMBSTONES_TABLE), staging, keys)
        rows = self._tables.run(script)
        return [(row["op"], row["n"], list(row["stale_ids"] or [])) for row in rows]

    # --- reads --------------------------------------------------------------------------------------------

    def rows(self, entity: Entity | str) -> list[dict[str, Any]]:
        """Every row with the canonical columns, as stored, ordered by id."""
        ent = self._entity(entity)
        self._ensure_installed()
        columns = ", ".join(f"`{c}`" for c in ["id", *ent.field_names])
        table = self._tables.table_id(warehouse_table(ent))
        rows = self._tables.run(f"SELECT {columns} FROM `{table}` ORDER BY id")
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
        self._ensure_installed()
        table = f"`{self._tables.table_id(warehouse_table(ent))}`"
        row_hash = sql_row_digest(ent)
        hub = {
            rid: row_digest(ent, rid, version, data)
            for rid, (version, data) in hub_records.items()
            if data is not None
        }
        totals = self._tables.run(
            f"SELECT COUNT(*) AS n, {sql_fold('h')} AS x FROM (SELECT {row_hash} AS h FROM {table})"
        )[0]
        report = ConsistencyReport(
            entity=ent.name,
            hub_rows=len(hub),
            store_rows=totals["n"],
            hub_checksum=fold(hub.values()),
            store_checksum=checksum_hex(totals["x"]),
        )
        if report.hub_rows == report.store_rows and report.hub_checksum == report.store_checksum:
            return report
        store: dict[str, str] = {}
        for row in self._tables.run(f"SELECT id, {row_hash} AS h FROM {table}"):
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
        total = self.total_stats
        return {"load_jobs": total.load_jobs, "merge_statements": total.merge_statements,
                "dml_statements": total.dml_statements}

    def unreachable(self) -> str | None:
        """Why BigQuery cannot be reached at all, within the health check's deadline; None when it answers
        (a missing dataset is an answer: install creates it)."""
        try:
            self.client.get_dataset(f"{self.client.project}.{self.dataset_id}", retry=self._check_retry)
        except NotFound:
            return None
        except Exception as exc:  # noqa: BLE001 - whatever stops the request is the answer
            return f"BigQuery unreachable: {type(exc).__name__}: {exc}"[:500]
        return None

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
            job = self.client.query(
                "SELECT 1 AS ok", location=self._tables.location, retry=self._check_retry
            )
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


def _latest_per_id(records: Sequence[GoldenRecord]) -> list[GoldenRecord]:
    """Keep the highest version of each record: BigQuery's MERGE rejects two source rows per target row."""
    latest: dict[str, GoldenRecord] = {}
    for record in records:
        kept = latest.get(record.record_id)
        if kept is None or record.version > kept.version:
            latest[record.record_id] = record
    return list(latest.values())


def _staging_row(ent: Entity, record: GoldenRecord, synced_at: datetime) -> dict[str, Any]:
    deleted = record.deleted or record.data is None
    data = {} if deleted or record.data is None else record.data
    row: dict[str, Any] = {"id": record.record_id}
    for f in ent.fields:
        value = data.get(f.name)
        # NUMERIC is loaded pre-rounded so that the checksum's Python side sees the stored value.
        if f.type is FieldType.NUMERIC and value is not None:
            value = format(bq_numeric(value), "f")
        row[f.name] = value
    row["hub_version"] = record.version
    row["origin_store"] = record.origin_store
    modified_at = record.origin_modified_at
    row["origin_modified_at"] = format_timestamp(modified_at) if modified_at else None
    row["synced_at"] = format_timestamp(synced_at)
    row["deleted"] = deleted
    row["entity"] = ent.name
    return row
