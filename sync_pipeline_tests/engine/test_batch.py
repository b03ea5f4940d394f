"""A batch decided in memory by direct calls: each change sees the ones before it in the same batch."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sync_pipeline.engine.batch import (
    DUPLICATE,
    QUARANTINED,
    HubView,
    InboxChange,
    canonical_id,
    changes_reach,
    resolve_batch,
    view_reach,
)
from sync_pipeline.engine.records import GoldenRecord, Op, StoreState
from sync_pipeline.model.canonical import content_hash

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
PRIORITY = ("twenty", "supabase", "local_db")
ADA_ID = "6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11"
BOB_ID = "0b7d5c8e-2f4a-4c1e-8d3b-9a6e5f4d3c21"
ADA = {"first_name": "Ada", "email": "ada@example.com", "city": "London"}


def change(n: int, store: str, data: dict[str, Any] | None, record_id: str | None = ADA_ID,
           row_version: int | None = 0, store_record_id: str | None = None, minutes: int = 0) -> InboxChange:
    return InboxChange(n, store, f"{store}:{n}", record_id, store_record_id or record_id,
                       Op.UPSERT if data is not None else Op.DELETE, data, row_version,
                       T0 + timedelta(minutes=minutes))


def decide(changes: list[InboxChange], view: HubView, claimed: set[tuple[str, str]] | None = None):
    claimed = {(c.store, c.event_key) for c in changes} if claimed is None else claimed
    return resolve_batch("people", changes, claimed, view, PRIORITY)


def test_a_record_created_and_edited_in_one_batch_gets_both_versions() -> None:
    done = decide([change(1, "local_db", ADA), change(2, "local_db", {**ADA, "city": "Paris"}, row_version=1,
                                                      minutes=1)], HubView("email"))
    assert [(d.outcome, d.version) for d in done.decided] == [("applied", 1), ("applied", 2)]
    assert [g.version for g in done.versions] == [1, 2]
    assert done.golden[ADA_ID].data == {**ADA, "city": "Paris"}
    assert done.states[(ADA_ID, "local_db")].seen_version == 2


def test_a_record_new_to_the_hub_links_by_natural_key_to_one_created_earlier_in_the_batch() -> None:
    twenty = change(2, "twenty", {**ADA, "city": "Rome"}, record_id=None, row_version=None,
                    store_record_id="twenty-ada", minutes=5)
    done = decide([change(1, "local_db", ADA), twenty], HubView("email"))
    assert [(d.outcome, d.record_id) for d in done.decided] == [("applied", ADA_ID), ("conflict", ADA_ID)]
    assert done.golden[ADA_ID].data == {**ADA, "city": "Rome"}  # the later edit wins the contested field
    assert done.states[(ADA_ID, "twenty")].store_record_id == "twenty-ada"


def test_a_change_taking_another_records_key_is_quarantined_and_changes_nothing() -> None:
    ada = GoldenRecord("people", ADA_ID, 1, ADA, False, content_hash(ADA), "local_db", T0)
    view = HubView("email", golden={ADA_ID: ada}, key_owners={"ada@example.com": {ADA_ID}},
                   states={(ADA_ID, "local_db"): StoreState(1, ada.content_hash, 0)})
    done = decide([change(1, "supabase", {**ADA, "first_name": "Bob"}, record_id=BOB_ID)], view)
    [decided] = done.decided
    assert decided.outcome == QUARANTINED and decided.quarantined is not None
    assert decided.quarantined.reason == f"email 'ada@example.com' already belongs to record {ADA_ID}"
    assert done.versions == [] and done.states == {} and done.stats.quarantined == 1


def test_a_replayed_event_is_a_duplicate_and_changes_nothing() -> None:
    done = decide([change(1, "local_db", ADA)], HubView("email"), claimed=set())
    assert [d.outcome for d in done.decided] == [DUPLICATE]
    assert done.versions == [] and done.stats.duplicates == 1


def _golden(record_id: str, data: dict[str, Any], version: int = 1) -> GoldenRecord:
    return GoldenRecord("people", record_id, version, data, False, content_hash(data), "local_db", T0)


def test_a_batch_reaches_the_records_keys_and_store_ids_its_changes_name() -> None:
    twenty_id = "7a1b2c3d-0000-4000-8000-000000000001"
    reach = changes_reach([change(1, "local_db", ADA),
                           change(2, "twenty", {"first_name": "T", "email": "T@X.com"}, record_id=None,
                                  store_record_id=twenty_id),
                           change(3, "local_db", None, record_id=None, store_record_id="42")], "email")
    assert reach.record_ids == {ADA_ID, twenty_id, canonical_id("42", "local_db")}
    assert reach.store_ids == {("local_db", ADA_ID), ("twenty", twenty_id), ("local_db", "42")}
    assert reach.keys == {"ada@example.com", "T@X.com"}  # as the hub compares them: the stored text


def test_a_batch_meets_another_by_a_record_a_key_or_a_store_id_it_reached_through_the_hub() -> None:
    """What the next batch names before it reads the hub, against everything the batch being written read
    and decided: a record it created, the key a record had before the batch changed it, a store id it mapped."""
    view = HubView("email", golden={BOB_ID: _golden(BOB_ID, {"first_name": "Bob", "email": "bob@old.com"})},
                   states={(BOB_ID, "supabase"): StoreState(1, None, 0, "sb-7")})
    written = changes_reach([change(1, "local_db", ADA)], "email")
    written |= view_reach(view)
    decide([change(1, "local_db", ADA), change(2, "local_db", {"first_name": "Bob", "email": "bob@new.com"},
                                                record_id=BOB_ID, row_version=1)], view)
    written |= view_reach(view)

    def next_batch(*changes: InboxChange) -> bool:
        return changes_reach(changes, "email").meets(written)

    assert next_batch(change(9, "supabase", {"city": "Rome"}))  # by the id of the record the batch created
    assert next_batch(change(9, "twenty", {"email": "bob@old.com"}, record_id=None, store_record_id="t-1"))
    assert next_batch(change(9, "twenty", {"email": "bob@new.com"}, record_id=None, store_record_id="t-1"))
    assert next_batch(change(9, "supabase", {"city": "Rome"}, record_id=None, store_record_id="sb-7"))
    assert not next_batch(change(9, "twenty", {"email": "eve@example.com"}, record_id=None,
                                 store_record_id="t-2"),
                          change(10, "local_db", {"city": "Rome"}, record_id=BOB_ID.replace("0b7d", "1b7d")))
