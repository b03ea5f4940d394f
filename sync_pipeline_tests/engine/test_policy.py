"""The rules around the resolver by direct calls: the claimed base, echoes, the own-base walk, overwritten
edits and what the store holds after a resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sync_pipeline.engine.policy import (
    REASSERTED_ORIGIN,
    claimed_base,
    held_after,
    is_echo,
    overwritten,
    own_base,
)
from sync_pipeline.engine.records import NEVER_HELD, Change, GoldenRecord, Op, StoreState
from sync_pipeline.engine.resolver import MERGED_ORIGIN, Outcome, Resolution
from sync_pipeline.model.canonical import content_hash

RECORD_ID = "6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ADA = {"first_name": "Ada", "last_name": "Lovelace", "city": "London"}
ADA_IN_PARIS = {**ADA, "city": "Paris"}


def golden(data: dict[str, Any] | None, version: int = 3, store: str = "twenty",
           at: datetime = T0) -> GoldenRecord:
    return GoldenRecord("people", RECORD_ID, version, data, data is None, content_hash(data), store, at)


def change(data: dict[str, Any] | None, store: str = "twenty", at: datetime = T0 + timedelta(minutes=5),
           base_version: int = 3) -> Change:
    op = Op.DELETE if data is None else Op.UPSERT
    return Change(store, "people", RECORD_ID, op, data, base_version, at, "e1")


def holding(data: dict[str, Any] | None, seen_version: int = 3, written_version: int = 3) -> StoreState:
    return StoreState(seen_version, content_hash(data), written_version)


# --- the claimed base ---------------------------------------------------------------------------------

def test_the_base_is_the_version_the_row_carried() -> None:
    assert claimed_base(2, holding(ADA, seen_version=5)) == 2
    assert claimed_base(0, holding(ADA, seen_version=5)) == 0


def test_without_a_row_version_the_base_is_what_the_store_last_held() -> None:
    assert claimed_base(None, holding(ADA, seen_version=5)) == 5
    assert claimed_base(None, NEVER_HELD) == 0


# --- echoes ---------------------------------------------------------------------------------------------

def test_a_record_new_to_the_hub_is_never_an_echo() -> None:
    assert not is_echo(None, change(ADA), None, holding(ADA))


def test_a_version_we_wrote_to_the_store_coming_back_is_an_echo() -> None:
    current = golden(ADA_IN_PARIS, store="supabase")
    assert is_echo(current, change(ADA_IN_PARIS), None, holding(ADA_IN_PARIS))


def test_an_older_snapshot_of_the_store_than_the_hub_took_is_an_echo() -> None:
    current = golden(ADA_IN_PARIS, store="twenty", at=T0)
    late_poll = change(ADA, store="twenty", at=T0 - timedelta(seconds=1))
    assert is_echo(current, late_poll, None, holding({"city": "elsewhere"}))


def test_a_newer_edit_of_the_store_is_not_an_echo() -> None:
    current = golden(ADA, store="twenty", at=T0)
    assert not is_echo(current, change(ADA_IN_PARIS, store="twenty", at=T0 + timedelta(seconds=1)), None,
                       holding(ADA))


def test_an_older_edit_from_a_store_that_did_not_make_the_golden_version_is_not_an_echo() -> None:
    current = golden(ADA, store="supabase", at=T0)
    assert not is_echo(current, change(ADA_IN_PARIS, store="twenty", at=T0 - timedelta(hours=1)), None,
                       holding(ADA))


def test_a_store_with_row_versions_is_never_judged_an_echo_here() -> None:
    current = golden(ADA_IN_PARIS, store="local_db", at=T0)
    echo_like = change(ADA_IN_PARIS, store="local_db", at=T0 - timedelta(seconds=1))
    assert not is_echo(current, echo_like, 3, holding(ADA_IN_PARIS))


def test_a_store_the_hub_knows_nothing_of_shows_no_version_of_ours() -> None:
    current = golden(ADA, store="supabase")
    assert not is_echo(current, change(ADA), None, NEVER_HELD)


# --- the own base -------------------------------------------------------------------------------------

def test_with_no_later_versions_the_base_stays() -> None:
    assert own_base(4, "twenty", []) == 4


def test_the_base_moves_past_the_stores_own_versions_and_reasserts() -> None:
    later = [(5, "twenty"), (6, REASSERTED_ORIGIN), (7, "twenty")]
    assert own_base(4, "twenty", later) == 7


def test_the_base_stops_before_the_first_version_from_elsewhere() -> None:
    later = [(5, "twenty"), (6, "supabase"), (7, "twenty")]
    assert own_base(4, "twenty", later) == 5


def test_a_merged_version_is_from_elsewhere() -> None:
    assert own_base(4, "twenty", [(5, MERGED_ORIGIN), (6, "twenty")]) == 4


# --- overwritten edits ----------------------------------------------------------------------------------

def test_an_edit_on_a_version_older_than_our_last_write_was_overwritten() -> None:
    assert overwritten(2, holding(ADA, written_version=3))


def test_an_edit_on_our_last_write_or_later_was_not_overwritten() -> None:
    assert not overwritten(3, holding(ADA, written_version=3))
    assert not overwritten(4, holding(ADA, written_version=3))


def test_without_a_row_version_nothing_is_known_to_be_overwritten() -> None:
    assert not overwritten(None, holding(ADA, written_version=3))


def test_a_store_we_never_wrote_to_has_nothing_overwritten() -> None:
    assert not overwritten(0, NEVER_HELD)


# --- what the store holds afterwards -----------------------------------------------------------------

def test_after_an_applied_change_the_store_holds_the_new_version() -> None:
    current = golden(ADA, version=3)
    result = golden(ADA_IN_PARIS, version=4)
    state = holding(ADA, seen_version=3)
    assert held_after(Resolution(Outcome.APPLIED, result), change(ADA_IN_PARIS), current, state, False) == (
        4, content_hash(ADA_IN_PARIS))


def test_an_overwritten_edit_leaves_the_store_holding_what_it_held() -> None:
    current = golden(ADA, version=3)
    result = golden(ADA_IN_PARIS, version=4)
    state = holding(ADA, seen_version=3)
    assert held_after(Resolution(Outcome.APPLIED, result), change(ADA_IN_PARIS), current, state, True) == (
        3, content_hash(ADA))


def test_after_an_echo_the_store_holds_the_current_version() -> None:
    current = golden(ADA_IN_PARIS, version=6)
    state = holding(ADA, seen_version=2)
    assert held_after(Resolution(Outcome.ECHO, None), change(ADA_IN_PARIS), current, state, False) == (
        6, content_hash(ADA_IN_PARIS))


def test_when_the_hub_keeps_other_content_the_store_holds_what_it_held() -> None:
    current = golden(ADA, version=6)
    rome = {**ADA, "city": "Rome"}
    state = holding(rome, seen_version=4)
    golden_wins = Resolution(Outcome.CONFLICT, None)
    assert held_after(golden_wins, change(ADA_IN_PARIS), current, state, False) == (4, content_hash(rome))


def test_a_losing_edit_of_a_store_that_held_the_result_has_the_result_sent_again() -> None:
    # The store echoed the hub's delete (v6) earlier in the batch, then re-inserted the row before that
    # delete was made elsewhere: the edit loses, and the store, which holds it now, must be sent v6 again.
    current = golden(None, version=6)
    state = holding(None, seen_version=6)
    golden_wins = Resolution(Outcome.CONFLICT, None)
    assert held_after(golden_wins, change(ADA, base_version=0), current, state, False) == (5, content_hash(ADA))


def test_after_a_merge_the_store_holds_neither_side() -> None:
    current = golden(ADA, version=6)
    merged = golden({**ADA_IN_PARIS, "first_name": "Augusta"}, version=7, store=MERGED_ORIGIN)
    state = holding(ADA, seen_version=5)
    assert held_after(Resolution(Outcome.CONFLICT, merged), change(ADA_IN_PARIS), current, state, False) == (
        5, content_hash(ADA))


def test_a_delete_of_a_record_the_hub_never_had_leaves_nothing_held() -> None:
    assert held_after(Resolution(Outcome.NOOP, None), change(None), None, NEVER_HELD, False) == (0, None)
