"""The resolver by direct calls: fast-forwards, echoes, deletes, conflicts, merges and their log records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sync_pipeline.engine.records import Change, GoldenRecord, Op
from sync_pipeline.engine.resolver import MERGED_ORIGIN, Outcome, Resolution, resolve
from sync_pipeline.model.canonical import DELETED_HASH, content_hash

RECORD_ID = "6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
PRIORITY = ("twenty", "supabase", "local_db")
BASE = {"first_name": "Ada", "last_name": "Lovelace", "city": "London", "job_title": "Analyst"}


def golden(data: dict[str, Any] | None, version: int = 2, store: str = "supabase",
           at: datetime = T0) -> GoldenRecord:
    return GoldenRecord("people", RECORD_ID, version, data, data is None, content_hash(data), store, at)


def change(data: dict[str, Any] | None, base_version: int = 1, store: str = "local_db",
           at: datetime = T0, event_key: str = "e1") -> Change:
    op = Op.DELETE if data is None else Op.UPSERT
    return Change(store, "people", RECORD_ID, op, data, base_version, at, event_key)


def edited(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


# --- no conflict ------------------------------------------------------------------------------------

def test_first_sight_of_a_record_creates_version_one() -> None:
    incoming = change(edited(), base_version=0, at=T0)
    result = resolve(None, incoming, None, PRIORITY)
    assert result.outcome is Outcome.APPLIED
    assert result.conflict is None
    assert result.golden == GoldenRecord("people", RECORD_ID, 1, edited(), False, content_hash(edited()),
                                         "local_db", T0)


def test_fast_forward_when_base_is_the_golden_version() -> None:
    current = golden(BASE, version=3)
    incoming = change(edited(city="Paris"), base_version=3, at=T0 + timedelta(minutes=1))
    result = resolve(current, incoming, BASE, PRIORITY)
    assert result.outcome is Outcome.APPLIED
    assert result.conflict is None
    assert result.golden is not None
    assert (result.golden.version, result.golden.data, result.golden.origin_store) == (4, edited(city="Paris"),
                                                                                       "local_db")
    assert result.golden.origin_modified_at == T0 + timedelta(minutes=1)
    assert result.golden.content_hash == content_hash(edited(city="Paris"))


def test_fast_forward_even_when_the_change_is_older_than_the_golden_time() -> None:
    """A store that saw the latest version edits it: no conflict, whatever its clock says."""
    current = golden(BASE, version=3, at=T0)
    result = resolve(current, change(edited(city="Paris"), base_version=3, at=T0 - timedelta(hours=1)), BASE)
    assert result.outcome is Outcome.APPLIED
    assert result.golden is not None and result.golden.data == edited(city="Paris")


def test_fast_forward_delete_makes_a_tombstone() -> None:
    result = resolve(golden(BASE, version=2), change(None, base_version=2), BASE, PRIORITY)
    assert result.outcome is Outcome.APPLIED
    assert result.golden is not None
    assert (result.golden.version, result.golden.deleted, result.golden.data) == (3, True, None)
    assert result.golden.content_hash == DELETED_HASH


def test_echo_of_the_golden_content_is_dropped_whatever_its_base() -> None:
    current = golden(edited(city="Paris"), version=5, store="twenty")
    for base_version in (0, 4, 5):
        result = resolve(current, change(dict(edited(city="Paris")), base_version=base_version), None, PRIORITY)
        assert result == Resolution(Outcome.ECHO, None)
        assert result.store_holds_result(change(edited(city="Paris")), current)


def test_echo_is_by_content_hash_not_by_key_order() -> None:
    current = golden(BASE)
    reordered = dict(reversed(list(BASE.items())))
    assert resolve(current, change(reordered), None).outcome is Outcome.ECHO


def test_delete_of_a_tombstone_is_an_echo() -> None:
    assert resolve(golden(None, version=4), change(None, base_version=1), None).outcome is Outcome.ECHO


def test_delete_of_a_record_the_hub_never_had_is_a_noop() -> None:
    assert resolve(None, change(None, base_version=0), None, PRIORITY) == Resolution(Outcome.NOOP, None)


# --- conflicts: last write wins, then store priority, then content hash ---------------------------------

def test_later_modification_wins_a_contested_field() -> None:
    current = golden(edited(city="Paris"), version=2, store="supabase", at=T0)
    incoming = change(edited(city="Berlin"), base_version=1, store="local_db", at=T0 + timedelta(seconds=1))
    result = resolve(current, incoming, BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT
    assert result.golden is not None
    assert (result.golden.version, result.golden.data["city"], result.golden.origin_store) == (3, "Berlin",
                                                                                               "local_db")
    assert result.conflict is not None
    assert (result.conflict.resolution, result.conflict.winner_store) == ("incoming_wins", "local_db")


def test_earlier_modification_loses_and_the_hub_keeps_its_record() -> None:
    current = golden(edited(city="Paris"), version=2, store="supabase", at=T0)
    incoming = change(edited(city="Berlin"), base_version=1, store="twenty", at=T0 - timedelta(seconds=1))
    result = resolve(current, incoming, BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT
    assert result.golden is None
    assert result.conflict is not None
    assert (result.conflict.resolution, result.conflict.winner_store) == ("golden_wins", "supabase")
    assert not result.store_holds_result(incoming, current)


def test_tie_on_time_goes_to_the_store_earlier_in_the_priority_list() -> None:
    current = golden(edited(city="Paris"), store="supabase")
    from_twenty = change(edited(city="Berlin"), store="twenty")
    from_local = change(edited(city="Berlin"), store="local_db")
    assert resolve(current, from_twenty, BASE, PRIORITY).conflict.resolution == "incoming_wins"
    assert resolve(current, from_local, BASE, PRIORITY).conflict.resolution == "golden_wins"
    # A store missing from the list ranks below every listed one.
    assert resolve(current, change(edited(city="Berlin"), store="csv"), BASE, PRIORITY).golden is None


def test_tie_on_time_and_priority_goes_to_the_higher_content_hash() -> None:
    paris, berlin = edited(city="Paris"), edited(city="Berlin")
    high, low = sorted((paris, berlin), key=content_hash, reverse=True)
    result = resolve(golden(low, store="supabase"), change(high, store="supabase"), BASE, PRIORITY)
    assert result.golden is not None and result.golden.data == high
    result = resolve(golden(high, store="supabase"), change(low, store="supabase"), BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT and result.golden is None


def _apply_in_order(first: Change, second: Change, base: dict[str, Any]) -> GoldenRecord:
    """The golden record after both changes (made concurrently on version 1) reach the hub in this order."""
    current = golden(base, version=1, store="twenty", at=T0 - timedelta(days=1))
    step = resolve(current, first, base, PRIORITY)
    current = step.golden or current
    step = resolve(current, second, base, PRIORITY)
    return step.golden or current


@given(
    a_city=st.sampled_from(["London", "Paris", "Berlin"]),
    b_city=st.sampled_from(["London", "Paris", "Rome"]),
    a_title=st.sampled_from(["Analyst", "Lead"]),
    b_name=st.sampled_from(["Lovelace", "King"]),
    a_store=st.sampled_from(["twenty", "supabase", "local_db", "csv"]),
    b_store=st.sampled_from(["twenty", "supabase", "local_db", "csv"]),
    a_delay=st.integers(0, 2),
    b_delay=st.integers(0, 2),
)
def test_concurrent_edits_end_in_the_same_content_whichever_side_is_processed_first(
        a_city: str, b_city: str, a_title: str, b_name: str, a_store: str, b_store: str,
        a_delay: int, b_delay: int) -> None:
    a = change(edited(city=a_city, job_title=a_title), store=a_store, at=T0 + timedelta(seconds=a_delay),
               event_key="a")
    b = change(edited(city=b_city, last_name=b_name), store=b_store, at=T0 + timedelta(seconds=b_delay),
               event_key="b")
    one, other = _apply_in_order(a, b, BASE), _apply_in_order(b, a, BASE)
    assert one.data == other.data
    assert one.content_hash == other.content_hash
    assert one.data["job_title"] == a_title and one.data["last_name"] == b_name  # disjoint edits both kept


def test_tie_is_deterministic_whichever_side_is_processed_first() -> None:
    a = change(edited(city="Paris"), store="supabase", event_key="a")
    b = change(edited(city="Berlin"), store="local_db", event_key="b")
    assert _apply_in_order(a, b, BASE).data["city"] == "Paris"
    assert _apply_in_order(b, a, BASE).data["city"] == "Paris"


# --- three-way merge ---------------------------------------------------------------------------------

def test_disjoint_field_edits_merge() -> None:
    current = golden(edited(city="Paris"), version=2, store="supabase", at=T0 + timedelta(seconds=5))
    incoming = change(edited(job_title="Lead"), base_version=1, store="local_db", at=T0)
    result = resolve(current, incoming, BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT
    assert result.golden is not None
    assert result.golden.data == edited(city="Paris", job_title="Lead")
    assert (result.golden.version, result.golden.origin_store) == (3, MERGED_ORIGIN)
    assert result.golden.origin_modified_at == T0 + timedelta(seconds=5)  # the later of the two
    assert result.golden.content_hash == content_hash(edited(city="Paris", job_title="Lead"))
    assert result.conflict is not None
    assert (result.conflict.resolution, result.conflict.winner_store) == ("merged", MERGED_ORIGIN)
    assert not result.store_holds_result(incoming, current)  # both stores need the merged record


def test_contested_fields_go_to_the_winner_and_disjoint_ones_merge() -> None:
    current = golden(edited(city="Paris", last_name="King"), store="supabase", at=T0)
    incoming = change(edited(city="Berlin", job_title="Lead"), store="local_db", at=T0 + timedelta(seconds=1))
    result = resolve(current, incoming, BASE, PRIORITY)
    assert result.golden is not None
    assert result.golden.data == edited(city="Berlin", last_name="King", job_title="Lead")
    assert result.conflict is not None and result.conflict.resolution == "merged"

    loser = change(edited(city="Berlin", job_title="Lead"), store="local_db", at=T0 - timedelta(seconds=1))
    result = resolve(current, loser, BASE, PRIORITY)
    assert result.golden is not None
    assert result.golden.data == edited(city="Paris", last_name="King", job_title="Lead")


def test_a_stale_copy_that_changed_nothing_does_not_revert_the_hub() -> None:
    current = golden(edited(city="Paris"), store="supabase", at=T0)
    result = resolve(current, change(dict(BASE), store="twenty", at=T0 + timedelta(hours=1)), BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT
    assert result.golden is None
    assert result.conflict is not None and result.conflict.resolution == "golden_wins"


def test_without_a_base_snapshot_every_differing_field_is_contested() -> None:
    current = golden(edited(city="Paris"), store="supabase", at=T0)
    incoming = change(edited(job_title="Lead"), store="local_db", at=T0 + timedelta(seconds=1))
    result = resolve(current, incoming, None, PRIORITY)
    assert result.golden is not None and result.golden.data == edited(job_title="Lead")
    assert result.conflict is not None and result.conflict.resolution == "incoming_wins"


# --- deletes against edits ---------------------------------------------------------------------------

def test_later_delete_beats_an_earlier_edit() -> None:
    current = golden(edited(city="Paris"), version=2, store="supabase", at=T0)
    result = resolve(current, change(None, base_version=1, store="local_db", at=T0 + timedelta(seconds=1)),
                     BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT
    assert result.golden is not None
    assert (result.golden.deleted, result.golden.data, result.golden.version) == (True, None, 3)
    assert result.conflict is not None and result.conflict.resolution == "incoming_wins"
    assert result.conflict.differing_fields == sorted(BASE)


def test_earlier_delete_loses_to_a_later_edit() -> None:
    current = golden(edited(city="Paris"), version=2, store="supabase", at=T0)
    result = resolve(current, change(None, base_version=1, store="local_db", at=T0 - timedelta(seconds=1)),
                     BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT and result.golden is None
    assert result.conflict is not None
    assert (result.conflict.resolution, result.conflict.winner_store) == ("golden_wins", "supabase")


def test_later_edit_resurrects_a_deleted_record() -> None:
    current = golden(None, version=2, store="supabase", at=T0)
    incoming = change(edited(city="Berlin"), base_version=1, store="local_db", at=T0 + timedelta(seconds=1))
    result = resolve(current, incoming, BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT
    assert result.golden is not None
    assert (result.golden.deleted, result.golden.data, result.golden.version) == (False, edited(city="Berlin"), 3)
    assert result.conflict is not None and result.conflict.resolution == "incoming_wins"


def test_earlier_edit_of_a_deleted_record_stays_deleted() -> None:
    current = golden(None, version=2, store="supabase", at=T0)
    incoming = change(edited(city="Berlin"), base_version=1, store="local_db", at=T0 - timedelta(seconds=1))
    result = resolve(current, incoming, BASE, PRIORITY)
    assert result.outcome is Outcome.CONFLICT and result.golden is None
    assert result.conflict is not None and result.conflict.resolution == "golden_wins"
    assert result.conflict.differing_fields == sorted(BASE)


# --- the conflict record -----------------------------------------------------------------------------

def test_conflict_record_holds_both_sides_and_the_differing_fields() -> None:
    golden_data = edited(city="Paris", last_name="King")
    incoming_data = edited(city="Berlin", job_title="Lead")
    current = golden(golden_data, version=7, store="twenty", at=T0)
    incoming = change(incoming_data, base_version=5, store="supabase", at=T0 + timedelta(milliseconds=250))
    conflict = resolve(current, incoming, BASE, PRIORITY).conflict
    assert conflict is not None
    assert (conflict.entity, conflict.record_id) == ("people", RECORD_ID)
    assert (conflict.golden_version, conflict.base_version) == (7, 5)
    assert (conflict.incoming_store, conflict.golden_store) == ("supabase", "twenty")
    assert conflict.differing_fields == ["city", "job_title", "last_name"]
    assert conflict.golden_side == {"store": "twenty", "version": 7, "deleted": False, "data": golden_data,
                                    "modified_at": "2025-03-01T12:00:00.000000Z"}
    assert conflict.incoming_side == {"store": "supabase", "version": 5, "deleted": False, "data": incoming_data,
                                      "modified_at": "2025-03-01T12:00:00.250000Z"}


def test_conflict_record_of_a_delete_marks_the_deleted_side() -> None:
    current = golden(edited(city="Paris"), version=2, store="supabase", at=T0)
    conflict = resolve(current, change(None, store="local_db", at=T0 + timedelta(seconds=1)), BASE).conflict
    assert conflict is not None
    assert conflict.incoming_side == {"store": "local_db", "version": 1, "deleted": True, "data": None,
                                      "modified_at": "2025-03-01T12:00:01.000000Z"}
    assert conflict.golden_side["deleted"] is False and conflict.golden_side["data"] == edited(city="Paris")
