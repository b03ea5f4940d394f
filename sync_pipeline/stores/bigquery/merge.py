"""The SQL of one publish: plan, history append, MERGE into the entity table, tombstones; no I/O.

Every statement reads only the staged keys: the entity table and the tombstones are read through a
constant filter on their clustering column (`id`, `record_id`), which BigQuery prunes blocks with, and
the change history is only appended to (it is partitioned by day on `synced_at`; nothing reads it back).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sync_pipeline.model.entities import Entity

TOMBSTONES_TABLE = "deleted_records"
# Up to this many staged keys are listed in the filter (a small sync's changes, scattered over the ids);
# beyond, their range: a page's ids are consecutive in id order, as the hub hands them out. Listing more
# helps BigQuery little and costs the emulator ~10 ms of analysis per key per statement (measured: a page
# of 1,000 took 10.3 s listed, 1.3 s ranged).
LISTED_KEYS = 100


def string_literal(value: str) -> str:
    """A GoogleSQL string literal holding `value` exactly."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


def key_filter(column: str, keys: Sequence[str]) -> str:
    """A constant predicate on `column` that holds for every staged key (and, for a range, a few more):
    what lets BigQuery prune a table clustered by that column to the blocks the page touches."""
    if not keys:
        return "FALSE"
    if len(keys) <= LISTED_KEYS:
        return f"{column} IN ({', '.join(string_literal(k) for k in sorted(set(keys)))})"
    return f"{column} BETWEEN {string_literal(min(keys))} AND {string_literal(max(keys))}"


def publish_script(ent: Entity, target: str, history: str, tombstones: str, staging: str,
                   keys: Sequence[str]) -> str:
    """One transaction: classify each staged row against the target and the last delete of its id, append
    the changes to the history, MERGE them into the target, remember the deletes; then report per op.

    The plan classifies each row once, before anything changes, so that the history gets exactly the
    changes the MERGE makes. A row absent from the table is only inserted when its version is newer than
    the last delete recorded for it: a late, older upsert cannot resurrect it. The run's values (entity,
    synced_at) are staged columns, not query parameters: bqemulator 1.4 drops query parameters of
    multi-statement scripts. The temp table's name is unique because bqemulator keeps temp tables after
    the script ends (BigQuery scopes them to the script).
    """
    data_columns = [f.name for f in ent.fields] + ["hub_version", "origin_store", "origin_modified_at"]
    insert_columns = ["id", *data_columns, "synced_at"]
    columns = ", ".join(f"`{c}`" for c in insert_columns)
    values = ", ".join(f"S.`{c}`" for c in insert_columns)
    update_set = ", ".join(f"`{c}` = S.`{c}`" for c in [*data_columns, "synced_at"])
    plan = f"_plan_{uuid.uuid4().hex[:12]}"
    entity = string_literal(ent.name)
    return f"""
BEGIN TRANSACTION;
CREATE TEMP TABLE {plan} AS
SELECT S.*, CASE
    WHEN T.id IS NOT NULL AND S.hub_version <= T.hub_version THEN 'stale'
    WHEN T.id IS NULL AND S.hub_version <= IFNULL(D.version, 0) THEN 'stale'
    WHEN T.id IS NULL AND S.deleted THEN 'absent'
    WHEN S.deleted THEN 'delete'
    WHEN T.id IS NULL THEN 'insert'
    ELSE 'update'
  END AS op
FROM `{staging}` AS S
LEFT JOIN (SELECT id, hub_version FROM `{target}` WHERE {key_filter("id", keys)}) AS T ON T.id = S.id
LEFT JOIN (SELECT record_id, version FROM `{tombstones}`
           WHERE entity = {entity} AND {key_filter("record_id", keys)}) AS D ON D.record_id = S.id;
INSERT INTO `{history}` (entity, record_id, version, op, origin_store, origin_modified_at, synced_at)
SELECT entity, id, hub_version, op, origin_store, origin_modified_at, synced_at
FROM {plan} WHERE op IN ('insert', 'update', 'delete');
MERGE `{target}` AS T
USING (SELECT * FROM {plan} WHERE op IN ('insert', 'update', 'delete')) AS S
ON T.id = S.id AND T.{key_filter("id", keys)}
WHEN MATCHED AND S.op = 'delete' THEN DELETE
WHEN MATCHED AND S.op = 'update' THEN UPDATE SET {update_set}
WHEN NOT MATCHED BY TARGET AND S.op = 'insert' THEN
  INSERT ({columns}) VALUES ({values});
MERGE `{tombstones}` AS D
USING (SELECT entity, id, hub_version FROM {plan} WHERE op = 'delete') AS S
ON D.entity = S.entity AND D.record_id = S.id AND D.entity = {entity} AND D.{key_filter("record_id", keys)}
WHEN MATCHED THEN UPDATE SET version = S.hub_version
WHEN NOT MATCHED BY TARGET THEN INSERT (entity, record_id, version) VALUES (S.entity, S.id, S.hub_version);
COMMIT TRANSACTION;
SELECT op, COUNT(*) AS n, ARRAY_AGG(IF(op = 'stale', id, NULL) IGNORE NULLS) AS stale_ids
FROM {plan} GROUP BY op;
"""


def tombstones_backfill(history: str, tombstones: str) -> str:
    """Fill a new tombstones table from a history written before it existed (its last delete per record):
    the one time the history is read whole."""
    return f"""INSERT INTO `{tombstones}` (entity, record_id, version)
SELECT entity, record_id, MAX(version) FROM `{history}` WHERE op = 'delete' GROUP BY entity, record_id"""
