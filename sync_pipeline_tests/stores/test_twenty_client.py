"""TwentyClient against the Twenty stand-in over real HTTP (a subprocess), faults injected by its knobs."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterator

import pytest

from sync_pipeline.sandbox.twenty.server import StandinServer, run_standin
from sync_pipeline.stores.twenty.client import (
    TwentyAuthError,
    TwentyClient,
    TwentyDuplicateError,
    TwentyNotFound,
    TwentyUnavailable,
)

SEED_PEOPLE = 1000
API_KEY = "test-key-do-not-leak-7f3a"


@pytest.fixture(scope="module")
def standin() -> Iterator[StandinServer]:
    """One seeded server per module; its budget is high so only the rate-limit tests meet it."""
    with run_standin(
        api_key=API_KEY, seed_people=SEED_PEOPLE, rate_limit_per_minute=100_000, rate_limit_per_second=10_000
    ) as server:
        yield server


@pytest.fixture()
def client(standin: StandinServer) -> Iterator[TwentyClient]:
    """A fast client (high pacing limit, short backoff); the stand-in's knobs are reset afterwards."""
    with TwentyClient(
        standin.base_url, standin.api_key, requests_per_minute=60_000, max_attempts=8,
        backoff_initial=0.02, backoff_max=0.2,
    ) as twenty:
        yield twenty
    standin.reset()


def new_person(**values: object) -> dict[str, object]:
    tag = uuid.uuid4().hex[:10]
    return {
        "id": str(uuid.uuid4()),
        "name": {"firstName": "Ada", "lastName": tag},
        "emails": {"primaryEmail": f"ada.{tag}@example.com"},
        **values,
    }


def live_count(standin: StandinServer, object_name: str) -> int:
    return standin.stats()["records"][object_name]["live"]


# --- reads --------------------------------------------------------------------------------------------


def test_paging_through_all_people_sees_each_exactly_once(
    standin: StandinServer, client: TwentyClient
) -> None:
    expected = live_count(standin, "people")
    pages = list(client.pages("people"))
    ids = [record["id"] for page in pages for record in page.records]
    assert expected >= SEED_PEOPLE
    assert len(ids) == len(set(ids)) == expected
    assert all(len(page.records) <= 60 for page in pages)
    assert len(pages) == math.ceil(expected / 60)
    assert pages[0].total_count == expected
    assert not pages[-1].has_next_page
    # A page's end cursor resumes the walk exactly where it stopped.
    resumed = next(client.pages("people", starting_after=pages[0].end_cursor))
    assert [r["id"] for r in resumed.records] == [r["id"] for r in pages[1].records]


def test_list_orders_by_updated_at_then_id(client: TwentyClient) -> None:
    keys = [(r["updatedAt"], r["id"]) for r in client.list("people", fields=["id", "updatedAt"])]
    assert keys == sorted(keys)


def test_filters(client: TwentyClient) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"Acme {tag} One", f"Acme {tag} Two", f"Globex {tag}"]
    client.batch_create("companies", [{"name": name} for name in names], upsert=False)
    acme = client.list("companies", filter=f'name[ilike]:"%acme {tag}%"')
    assert sorted(r["name"] for r in acme) == names[:2]
    both = client.list("companies", filter=f'or(name[eq]:"{names[0]}",name[eq]:"{names[2]}")')
    assert sorted(r["name"] for r in both) == [names[0], names[2]]

    person = client.create("people", new_person(jobTitle="CTO"))
    by_email = f'emails.primaryEmail[eq]:"{person["emails"]["primaryEmail"]}"'
    assert [r["id"] for r in client.list("people", filter=by_email)] == [person["id"]]


def test_get_update_soft_delete_restore_destroy(client: TwentyClient) -> None:
    person = client.create("people", new_person())
    assert client.get("people", person["id"])["emails"] == person["emails"]
    assert client.update("people", person["id"], {"jobTitle": "CEO"})["jobTitle"] == "CEO"
    client.soft_delete("people", person["id"])
    with pytest.raises(TwentyNotFound):
        client.get("people", person["id"])
    deleted = client.list("people", filter=f'and(id[eq]:"{person["id"]}",deletedAt[is]:NOT_NULL)')
    assert [r["id"] for r in deleted] == [person["id"]]
    assert client.restore("people", person["id"])["deletedAt"] is None
    client.destroy("people", person["id"])
    with pytest.raises(TwentyNotFound):
        client.get("people", person["id"])


# --- writes -------------------------------------------------------------------------------------------


def test_upsert_matches_by_unique_email(standin: StandinServer, client: TwentyClient) -> None:
    email = f"grace.{uuid.uuid4().hex[:8]}@example.com"
    first = client.create("people", {"emails": {"primaryEmail": email}, "jobTitle": "Engineer"}, upsert=True)
    before = live_count(standin, "people")
    again = client.create(
        "people", {"emails": {"primaryEmail": email.upper()}, "jobTitle": "Admiral"}, upsert=True
    )
    batch = client.batch_create("people", [{"emails": {"primaryEmail": email}, "city": "Arlington"}])
    assert again["id"] == first["id"] == batch.accepted[0].id
    assert live_count(standin, "people") == before
    stored = client.get("people", first["id"])
    assert (stored["jobTitle"], stored["city"]) == ("Admiral", "Arlington")


def test_batches_are_capped_at_batch_size(client: TwentyClient) -> None:
    result = client.batch_create("people", [new_person() for _ in range(130)])
    assert result.ok and result.requests == 3
    assert [a.index for a in result.accepted] == list(range(130))
    assert [a.id for a in result.accepted] == [a.record["id"] for a in result.accepted]


def test_a_lower_server_cap_is_adopted(standin: StandinServer) -> None:
    with TwentyClient(
        standin.base_url, standin.api_key, requests_per_minute=60_000, batch_size=100
    ) as twenty:
        result = twenty.batch_create("people", [new_person() for _ in range(100)])
    assert result.ok and len(result.accepted) == 100
    assert twenty.batch_size == 60


def test_a_bad_record_is_isolated_and_good_ones_written_once(
    standin: StandinServer, client: TwentyClient
) -> None:
    taken = client.create("people", new_person())
    records = [new_person() for _ in range(60)]
    records[37]["emails"] = dict(taken["emails"])  # duplicate e-mail: plain create rejects the batch
    before = live_count(standin, "people")
    result = client.batch_create("people", records, upsert=False)

    assert [f.index for f in result.failed] == [37]
    assert isinstance(result.failed[0].error, TwentyDuplicateError)
    assert [a.index for a in result.accepted] == [i for i in range(60) if i != 37]
    # Each good record was sent until accepted and never again: a resend of an accepted record
    # (same id) would have failed as a duplicate too.
    assert live_count(standin, "people") == before + 59
    assert result.requests <= 1 + 2 * math.ceil(math.log2(60))
    for accepted in result.accepted:
        assert accepted.result["createdAt"] == accepted.result["updatedAt"]


def test_a_storm_of_429s_and_5xx_writes_every_record_once(
    standin: StandinServer, client: TwentyClient
) -> None:
    before = live_count(standin, "opportunities")
    opportunities = [
        {"id": str(uuid.uuid4()), "name": f"Deal {i}", "amount": {"amountMicros": i * 10**6}}
        for i in range(200)
    ]
    client.batch_size = 20
    client.max_attempts = 16  # the first batch alone meets 7 scripted faults, then random ones
    # 429s before anything runs, 500s before anything is written, and 500s after the write landed.
    standin.set_faults(throttle_next=2, fail_next=2, fail_after_write_next=3, error_rate=0.3)
    result = client.batch_create("opportunities", opportunities)
    standin.set_faults(error_rate=0.0)

    assert result.ok, [str(f.error) for f in result.failed]
    assert sorted(a.id for a in result.accepted) == sorted(o["id"] for o in opportunities)
    assert live_count(standin, "opportunities") == before + 200
    stored = client.list("opportunities", filter='name[like]:"Deal %"', fields=["id", "name"])
    assert sorted(r["id"] for r in stored) == sorted(o["id"] for o in opportunities)
    assert client.rate_limited_responses == 2
    assert client.retries >= 7


def test_a_write_that_may_have_landed_is_not_replayed(standin: StandinServer, client: TwentyClient) -> None:
    """A plain create without upsert is not idempotent, so a 500 after sending is surfaced, not retried."""
    person = new_person()
    standin.set_faults(fail_after_write_next=1)
    with pytest.raises(TwentyUnavailable):
        client.create("people", person)
    assert client.requests == 1
    assert client.get("people", person["id"])["id"] == person["id"]


def test_persistent_server_errors_raise_unavailable(standin: StandinServer, client: TwentyClient) -> None:
    standin.set_faults(fail_next=100, fail_status=503)
    with pytest.raises(TwentyUnavailable) as raised:
        client.get("people", str(uuid.uuid4()))
    assert raised.value.status == 503
    assert client.requests == client.max_attempts
    assert client.retries == client.max_attempts - 1


# --- rate limiting ------------------------------------------------------------------------------------


def test_retry_after_is_honoured(standin: StandinServer, client: TwentyClient) -> None:
    standin.set_faults(throttle_next=1)  # answered 429 with Retry-After: 1
    started = time.monotonic()
    assert list(client.list("people", filter='city[eq]:"Nowhere"')) == []
    assert time.monotonic() - started >= 1.0
    assert client.rate_limited_responses == 1 and client.retries == 1
    assert client.seconds_throttled >= 1.0


def test_an_exhausted_server_bucket_is_waited_out() -> None:
    """The client believes in a budget the server does not grant: every 429 is followed by a wait of
    Retry-After, after which the same request succeeds at its first retry."""
    with run_standin(api_key=API_KEY, rate_limit_per_minute=60) as server:
        with TwentyClient(server.base_url, server.api_key, requests_per_minute=60_000) as twenty:
            # A bucket of 60 that gains a token a second: 66 requests meet 429s unless they take 6 s
            # (how many depends on the machine's speed, so the count is not the point).
            pages = [list(twenty.list("companies")) for _ in range(66)]
    assert len(pages) == 66
    assert twenty.rate_limited_responses >= 1
    assert twenty.retries == twenty.rate_limited_responses  # one 429 per throttled request, no more
    assert twenty.seconds_throttled >= twenty.rate_limited_responses  # Retry-After: 1 s each


def test_legacy_limit_reached_400_is_a_rate_limit(standin: StandinServer, client: TwentyClient) -> None:
    standin.set_faults(rate_limit_style="legacy-400", throttle_next=2)
    assert client.create("people", new_person(), upsert=True)["id"]
    assert client.rate_limited_responses == 2 and client.retries == 2


def test_pacing_spreads_requests_over_the_minute(standin: StandinServer) -> None:
    with TwentyClient(standin.base_url, standin.api_key, requests_per_minute=600) as twenty:
        started = time.monotonic()
        for _ in range(11):
            list(twenty.list("companies", filter='name[eq]:"none"'))
    assert time.monotonic() - started >= 1.0  # 10 intervals of 100 ms
    assert twenty.seconds_throttled >= 0.8
    assert twenty.rate_limited_responses == 0


# --- credentials --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("auth_style", "status"), [("2025", 401), ("2026", 403)])
def test_rejected_key_raises_auth_error_without_the_key(
    standin: StandinServer, caplog: pytest.LogCaptureFixture, auth_style: str, status: int
) -> None:
    wrong_key = "wrong-key-very-secret-0451"
    standin.set_faults(auth_style=auth_style)
    caplog.set_level(logging.DEBUG)
    try:
        with TwentyClient(standin.base_url, wrong_key, requests_per_minute=60_000) as twenty:
            with pytest.raises(TwentyAuthError) as raised:
                twenty.batch_create("people", [new_person()])
    finally:
        standin.reset()
    assert raised.value.status == status
    assert twenty.requests == 1  # never retried
    for text in (str(raised.value), repr(raised.value), repr(twenty), caplog.text):
        assert wrong_key not in text


def test_the_key_stays_out_of_logs_and_errors(
    standin: StandinServer, client: TwentyClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    standin.set_faults(fail_next=1, throttle_next=1)
    list(client.list("companies", filter='name[eq]:"none"'))
    with pytest.raises(TwentyNotFound) as raised:
        client.get("people", str(uuid.uuid4()))
    assert client.retries == 2
    assert API_KEY not in caplog.text and API_KEY not in str(raised.value)
