"""What the steps of a sync share: captured changes validated into inbox changes (`to_captured`), and the inbox
resolved into the golden records (`resolve`). Capture, adoption, publish (edits a store refused) and
reconciliation all enqueue through the first and resolve through the second."""

from __future__ import annotations

from typing import Sequence

from sync_pipeline.engine.records import CapturedChange, Op, QuarantinedRecord, ResolveStats
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.canonical import CanonicalValueError, parse_timestamp
from sync_pipeline.model.contracts import validate_records
from sync_pipeline.model.entities import Entity
from sync_pipeline.settings import SyncSettings
from sync_pipeline.stores.base import RawChange

# Changes per capture page from a change-log source: a table in a database, read under no API rate limit, so
# its pages need not be as small as the sync's batch size (which is sized for APIs). Each page costs a
# connection, a catalog read and a contract validation whatever its size: at 100 a page those fixed costs
# were most of a bulk load's capture. The page stays bounded, so memory does too.
CHANGE_LOG_PAGE = 5_000


def to_captured(entity: Entity, raw: Sequence[RawChange],
                record_ids: dict[str, str]) -> tuple[list[CapturedChange], list[QuarantinedRecord]]:
    """Validate raw changes against the entity's contract: valid ones become inbox changes, invalid ones
    quarantine rows with a readable reason. Deletes carry no content to validate."""
    quarantined = [QuarantinedRecord(c.store_record_id, c.event_key, c.error, [], c.row) for c in raw if c.error]
    upserts = [c for c in raw if not c.deleted and not c.error]
    result = validate_records(entity, [c.row for c in upserts])
    changes: list[CapturedChange] = []
    quarantined += [QuarantinedRecord(upserts[r.index].store_record_id, upserts[r.index].event_key, r.reason,
                                      r.failures, r.raw) for r in result.rejected]
    valid = {id(upserts[i]): record for i, record in result.valid}  # keyed by the raw change itself

    for c in raw:
        if c.error:
            continue
        try:
            modified_at = parse_timestamp(c.modified_at)
        except CanonicalValueError as exc:
            quarantined.append(QuarantinedRecord(c.store_record_id, c.event_key,
                                                 f"modification time: {exc}", [], c.row))
            continue
        store_id = c.store_record_id or c.record_id
        if c.deleted:
            changes.append(CapturedChange(record_ids.get(store_id), store_id, Op.DELETE, None, modified_at,
                                          c.event_key, c.base_version))
        elif id(c) in valid:
            # A field the row does not hold is one its store does not carry: the change leaves it as it is.
            data = {k: v for k, v in valid[id(c)].items() if k != "id" and k in c.row}
            changes.append(CapturedChange(record_ids.get(store_id), store_id, Op.UPSERT, data, modified_at,
                                          c.event_key, c.base_version))
    return changes, quarantined


def resolve(hub: Hub, entity: Entity, run_id: str | None, settings: SyncSettings) -> ResolveStats:
    return hub.resolve_pending(entity, run_id, settings.store_priority, settings.resolve_batch_size)
