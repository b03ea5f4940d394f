"""Twenty's poll against the real stand-in over HTTP: each poll re-reads only a few seconds behind its
watermark, and once per overlap a sweep re-reads the whole overlap, so a write committed late (stamped
before records already read, §10.5) is still read, and a burst of writes is not read again by every poll.

A late commit is made by sending `updatedAt` (§10.2), as the transaction that started then would stamp it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sync_pipeline.model.canonical import parse_timestamp
from sync_pipeline.model.entities import entity
from sync_pipeline.sandbox.twenty.schema import format_timestamp

PEOPLE = entity("people")
BURSTS = (120, 1200)  # people written a minute ago: 2 and 20 pages of a walk


def _person(n: int, **extra) -> dict:
    return {"name": {"firstName": "Burst", "lastName": f"P{n}"}, "emails": {"primaryEmail": f"p{n}@burst.test"},
            **extra}


def _read(batch) -> set[str]:
    return {c.store_record_id for c in batch.changes}


def test_a_write_committed_late_is_read_by_the_next_sweep(twenty_store, twenty_client):
    first = twenty_client.create("people", _person(1))
    cursor = twenty_store.capture(PEOPLE, None, 1000).cursor
    stamped = parse_timestamp(first["updatedAt"]) - timedelta(minutes=1)  # within the overlap (5 min)
    late = twenty_client.create("people", _person(2, updatedAt=format_timestamp(stamped)))
    later = twenty_client.create("people", _person(3))
    polled = twenty_store.capture(PEOPLE, cursor, 1000)
    assert later["id"] in _read(polled) and late["id"] not in _read(polled)  # behind what a poll re-reads
    overdue = format_timestamp(datetime.now(timezone.utc) - twenty_store.window.overlap)
    swept = twenty_store.capture(PEOPLE, {**polled.cursor, "swept_at": overdue}, 1000)
    assert late["id"] in _read(swept)
    assert twenty_store.capture(PEOPLE, swept.cursor, 1000).cursor["swept_at"] == swept.cursor["swept_at"]


def _requests_of_polls_after_a_burst(twenty_standin, twenty_client, twenty_store, people: int) -> int:
    """The requests of the two polls after the one that read `people` written a minute ago and one written
    now (the watermark, which each poll reads again)."""
    twenty_standin.reset(records=True)
    a_minute_ago = format_timestamp(datetime.now(timezone.utc) - timedelta(minutes=1))
    assert twenty_client.batch_create("people", [_person(n, updatedAt=a_minute_ago) for n in range(people)]).ok
    newest = twenty_client.create("people", _person(people))
    first = twenty_store.capture(PEOPLE, None, 10 * people)
    assert len(_read(first)) == people + 1
    before = twenty_standin.stats()["requests"]
    second = twenty_store.capture(PEOPLE, first.cursor, 10 * people)
    third = twenty_store.capture(PEOPLE, second.cursor, 10 * people)
    assert _read(second) == _read(third) == {newest["id"]}
    return int(twenty_standin.stats()["requests"] - before)


def test_a_burst_of_writes_is_not_read_again_by_the_polls_after_it(twenty_standin, twenty_client, twenty_store):
    small, large = (_requests_of_polls_after_a_burst(twenty_standin, twenty_client, twenty_store, people)
                    for people in BURSTS)
    assert small == large == 2  # a page each, empty


def test_the_walk_after_an_empty_first_one_is_a_sweep(twenty_store, twenty_client):
    """It reads from before where a sweep would start: the sweep after it is an overlap away, not due at once."""
    empty = twenty_store.capture(PEOPLE, None, 1000)
    assert twenty_client.batch_create("people", [_person(n) for n in range(3)]).ok
    burst = twenty_store.capture(PEOPLE, empty.cursor, 1000)
    assert len(_read(burst)) == 3 and burst.cursor["swept_at"] > empty.cursor["swept_at"]


def test_a_sweep_read_in_batches_keeps_its_state_to_the_end(twenty_store, twenty_client):
    assert twenty_client.batch_create("people", [_person(n) for n in range(130)]).ok
    batches = [twenty_store.capture(PEOPLE, None, 60)]
    while batches[-1].more:
        batches.append(twenty_store.capture(PEOPLE, batches[-1].cursor, 60))
    assert len(batches) == 3 and len(set().union(*map(_read, batches))) == 130
    assert {b.cursor["swept_at"] for b in batches} == {batches[0].cursor["swept_at"]}
