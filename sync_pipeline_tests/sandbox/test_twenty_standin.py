"""The Twenty stand-in against the contract, over real HTTP.

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sync_pipeline.sandbox.twenty.seed import person_row
from sync_pipeline.sandbox.twenty.server import StandinServer, run_standin

from .conftest import SEED_COMPANIES, SEED_PEOPLE, WebhookReceiver

SEED_PEOPLE_FILTER = 'emails.primaryEmail[like]:"%@example.com"'
SEED_ROWS = [person_row(i, SEED_COMPANIES) for i in range(SEED_PEOPLE)]


def new_email() -> str:
    return f"{uuid.uuid4().hex[:12]}@standin.test"


def only_value(body: dict[str, Any]) -> Any:
    """§3: the envelope under ``data`` always has exactly one key."""
    assert len(body["data"]) == 1
    return next(iter(body["data"].values()))


def create_person(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    fields.setdefault("emails", {"primaryEmail": new_email()})
    response = api.post("/rest/people", json=fields)
    assert response.status_code == 201, response.text
    return response.json()["data"]["createPerson"]


def envelope(status: int, error: str, message: str) -> dict[str, Any]:
    return {"statusCode": status, "error": error, "messages": [message]}


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status and len(body["messages"]) == 1
    return body["messages"][0]


# --- §1 auth ---------------------------------------------------------------------------------------


def test_missing_token_is_403_and_bad_token_is_401(standin: StandinServer) -> None:
    with httpx.Client(base_url=standin.base_url) as anonymous:
        missing = anonymous.get("/rest/people")
        bad = anonymous.get("/rest/people", headers={"Authorization": "Bearer nope"})
        admin = anonymous.get("/_standin/stats")
    assert missing.status_code == 403
    assert missing.json() == envelope(403, "FORBIDDEN_EXCEPTION", "missing authentication token")
    assert bad.status_code == 401
    assert bad.json() == {"statusCode": 401, "messages": ["Token invalid."], "error": "UNAUTHENTICATED"}
    assert admin.status_code == 403


# --- §4 lists ----------------------------------------------------------------------------------------


def test_list_envelope_default_limit_and_cursor_format(api: httpx.Client) -> None:
    body = api.get("/rest/people", params={"filter": SEED_PEOPLE_FILTER}).json()
    assert list(body) == ["data", "totalCount", "pageInfo"]
    people = body["data"]["people"]
    assert len(people) == 60 and body["totalCount"] == SEED_PEOPLE
    assert body["pageInfo"]["hasNextPage"] is True and body["pageInfo"]["hasPreviousPage"] is False
    assert [p["id"] for p in people] == sorted(p["id"] for p in people)  # default order: id ascending
    assert json.loads(base64.b64decode(body["pageInfo"]["endCursor"])) == {"id": people[-1]["id"]}
    assert "company" not in people[0] and people[0]["companyId"]  # depth 0 by default (§4.5)

    clamped = api.get("/rest/people", params={"limit": 500}).json()
    assert len(clamped["data"]["people"]) == 60
    empty = api.get("/rest/people", params={"limit": 0}).json()
    assert empty["data"]["people"] == [] and empty["pageInfo"]["startCursor"] is None


@pytest.mark.parametrize("order_by", [None, "updatedAt[AscNullsFirst]", "name.lastName[DescNullsLast]"])
def test_forward_pages_of_60_see_each_person_exactly_once(api: httpx.Client, order_by: str | None) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 60, "filter": SEED_PEOPLE_FILTER}
    if order_by:
        params["order_by"] = order_by
    pages = 0
    while True:
        body = api.get("/rest/people", params=params).json()
        pages += 1
        assert body["totalCount"] == SEED_PEOPLE
        seen += [person["id"] for person in body["data"]["people"]]
        if not body["pageInfo"]["hasNextPage"]:
            break
        params["starting_after"] = body["pageInfo"]["endCursor"]
    assert pages == 17 and len(seen) == len(set(seen)) == SEED_PEOPLE
    if order_by == "updatedAt[AscNullsFirst]":
        cursor = json.loads(base64.b64decode(body["pageInfo"]["endCursor"]))
        assert list(cursor) == ["updatedAt", "id"]


def test_backward_page_with_ending_before(api: httpx.Client) -> None:
    params = {"limit": 60, "filter": SEED_PEOPLE_FILTER}
    first = api.get("/rest/people", params=params).json()
    after_first = {**params, "starting_after": first["pageInfo"]["endCursor"]}
    second = api.get("/rest/people", params=after_first).json()
    before_second = {**params, "ending_before": second["pageInfo"]["startCursor"]}
    back = api.get("/rest/people", params=before_second).json()
    assert back["data"]["people"] == first["data"]["people"]
    assert back["pageInfo"]["hasNextPage"] is True and back["pageInfo"]["hasPreviousPage"] is False
    both = api.get("/rest/people", params={"starting_after": "x", "ending_before": "y"})
    assert error_of(both, 400) == "Cannot provide both before and after"
    assert error_of(api.get("/rest/people", params={"starting_after": "%%%"}), 400) == "Invalid cursor: %%%"


def expected_ids(predicate: Any) -> set[str]:
    return {row["id"] for row in SEED_ROWS if predicate(row)}


def filtered_ids(api: httpx.Client, filter_text: str) -> set[str]:
    ids: set[str] = set()
    params: dict[str, Any] = {"limit": 60, "filter": filter_text}
    while True:
        body = api.get("/rest/people", params=params).json()
        assert "data" in body, body
        ids |= {person["id"] for person in body["data"]["people"]}
        if not body["pageInfo"]["hasNextPage"]:
            return ids
        params["starting_after"] = body["pageInfo"]["endCursor"]


@pytest.mark.parametrize(
    ("filter_text", "predicate"),
    [
        ("name.firstName[eq]:Ada", lambda r: r["name"]["firstName"] == "Ada"),
        ('name.firstName[eq]:"Ada"', lambda r: r["name"]["firstName"] == "Ada"),
        (
            f"and({SEED_PEOPLE_FILTER},"
            "or(name.firstName[eq]:Ada,and(city[eq]:'Paris',not(jobTitle[neq]:CTO))))",
            lambda r: r["name"]["firstName"] == "Ada" or (r["city"] == "Paris" and r["jobTitle"] == "CTO"),
        ),
        ("name.lastName[in]:[Turing,\"Hopper\"],city[eq]:Rome",
         lambda r: r["name"]["lastName"] in ("Turing", "Hopper") and r["city"] == "Rome"),
        ('emails.primaryEmail[ilike]:"%.TURING.00%"', lambda r: ".turing.00" in r["emails"]["primaryEmail"]),
        ('emails.primaryEmail[like]:"grace.%"', lambda r: r["emails"]["primaryEmail"].startswith("grace.")),
        (f"{SEED_PEOPLE_FILTER},avatarUrl[is]:NULL", lambda r: True),
        ("jobTitle[is]:NOT_NULL,position[lte]:10", lambda r: r["position"] <= 10),
        ('updatedAt[gte]:"2025-01-01T01:00:00Z",updatedAt[lt]:"2025-01-01T02:00:00.000+00:00"',
         lambda r: "2025-01-01T01:00" <= r["updatedAt"] < "2025-01-01T02:00"),
        (f'companyId[eq]:"{person_row(3, SEED_COMPANIES)["companyId"]}"',
         lambda r: r["companyId"] == person_row(3, SEED_COMPANIES)["companyId"]),
    ],
)
def test_filter_grammar(api: httpx.Client, filter_text: str, predicate: Any) -> None:
    assert filtered_ids(api, filter_text) == expected_ids(predicate)


def test_quoted_values_keep_commas_and_parentheses(api: httpx.Client) -> None:
    person = create_person(api, jobTitle="Head of R&D, (EMEA)")
    found = filtered_ids(api, 'or(jobTitle[eq]:"Head of R&D, (EMEA)",jobTitle[eq]:\'x,y\')')
    assert found == {person["id"]}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"filter": 'updatedAt[gtx]:"2024-01-01"'},
         "'filter' invalid for 'updatedAt[gtx]:\"2024-01-01\"', comparator gtx not in eq, neq, in, "
         "containsAny, is, gt, gte, lt, lte, startsWith, endsWith, like, ilike"),
        ({"filter": "updatedAt"}, "'filter' invalid for 'updatedAt'. eg: price[gte]:10"),
        ({"filter": "and(id[is]:NULL"}, "'filter' invalid. 1 close bracket is missing in the query"),
        ({"filter": "id[in]:x"},
         "'filter' invalid for 'in' operator. Received 'x' but array value expected "
         "eg: 'field[in]:[value_1,value_2]'"),
        ({"filter": "not(id[is]:NULL,id[is]:NULL)"},
         "'filter' invalid. 'not' conjunction should contain only 1 condition. eg: not(field[eq]:1)"),
        ({"limit": "abc"}, "limit 'abc' is invalid. Should be an integer"),
        ({"limit": "-1"}, "limit '-1' is invalid. Should be an integer"),
        ({"depth": "2"}, "'depth=2' parameter invalid. Allowed values are 0, 1"),
        ({"order_by": "name.firstName[Up]"},
         "'order_by' direction 'Up' invalid. Allowed values are 'AscNullsFirst', 'AscNullsLast', "
         "'DescNullsFirst', 'DescNullsLast'. "
         "eg: ?order_by=field_1[AscNullsFirst],field_2[DescNullsLast],field_3"),
    ],
)
def test_query_errors(api: httpx.Client, params: dict[str, str], message: str) -> None:
    response = api.get("/rest/people", params=params)
    assert error_of(response, 400) == message
    assert response.json()["error"] == "BadRequestException"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/rest/persons", "object 'persons' not found. eg: companies"),
        ("/rest/person", "object 'person' not found. Did you mean 'people'?"),
        ("/rest/people/abc", "'abc' is not a valid UUID"),
        ("/rest/a/b/c", "Query path '/rest/a/b/c' invalid. Valid examples: /rest/companies/id or "
         "/rest/companies or /rest/batch/companies"),
    ],
)
def test_path_errors(api: httpx.Client, path: str, message: str) -> None:
    assert error_of(api.get(path), 400) == message


def test_depth_one_embeds_relations(api: httpx.Client) -> None:
    seed_person = SEED_ROWS[0]
    person = api.get(f"/rest/people/{seed_person['id']}", params={"depth": 1}).json()["data"]["person"]
    assert person["company"]["id"] == seed_person["companyId"]
    company_path = f"/rest/companies/{seed_person['companyId']}"
    company = api.get(company_path, params={"depth": 1}).json()["data"]["company"]
    assert seed_person["id"] in {p["id"] for p in company["people"]} and len(company["people"]) <= 60


# --- §5 writes ---------------------------------------------------------------------------------------


def test_create_normalises_and_sets_server_fields(api: httpx.Client) -> None:
    local = uuid.uuid4().hex[:10]
    response = api.post(
        "/rest/people",
        json={
            "name": {"firstName": "Ada", "lastName": "Lovelace"},
            "emails": {"primaryEmail": f"Ada.{local}@Standin.TEST", "additionalEmails": ["ADA@Work.Example"]},
            "linkedinLink": {"primaryLinkUrl": "HTTPS://WWW.LinkedIn.COM/in/Ada/"},
            "jobTitle": "",
        },
    )
    assert response.status_code == 201
    person = response.json()["data"]["createPerson"]
    assert person["emails"] == {
        "primaryEmail": f"ada.{local}@standin.test", "additionalEmails": ["ada@work.example"]
    }
    assert person["linkedinLink"]["primaryLinkUrl"] == "https://www.linkedin.com/in/Ada"
    assert person["jobTitle"] is None
    api_actor = {"source": "API", "workspaceMemberId": None, "name": "sync-bot", "context": {}}
    assert person["createdBy"] == api_actor
    assert person["updatedBy"] == person["createdBy"] and person["deletedAt"] is None
    assert person["createdAt"] == person["updatedAt"]
    assert time.strptime(person["updatedAt"], "%Y-%m-%dT%H:%M:%S.%fZ") and len(person["updatedAt"]) == 24
    assert api.get(f"/rest/people/{person['id']}").json() == {"data": {"person": person}}

    kept = create_person(api, createdBy={"source": "IMPORT"})
    assert kept["createdBy"]["source"] == "IMPORT" and kept["createdBy"]["name"] == "sync-bot"
    opportunity = api.post("/rest/opportunities", json={"name": "Deal"}).json()["data"]["createOpportunity"]
    assert opportunity["stage"] == "NEW"


def test_write_errors(api: httpx.Client) -> None:
    person = create_person(api)
    shouting = {"emails": {"primaryEmail": person["emails"]["primaryEmail"].upper()}}
    duplicate = api.post("/rest/people", json=shouting)
    assert duplicate.json() == envelope(400, "BadRequestException", "A duplicate entry was detected")
    unknown = api.post("/rest/people", json={"foo": 1})
    assert error_of(unknown, 400) == 'Object person doesn\'t have any "foo" field.'
    assert error_of(api.post("/rest/opportunities", json={"stage": None}), 400) == (
        "Field stage is not nullable and has no default value."
    )
    assert error_of(api.post("/rest/companies", json={"people": []}), 400) == (
        "One-to-many relation people field does not support write operations."
    )
    missing = api.patch(f"/rest/people/{uuid.uuid4()}", json={"city": "Paris"})
    assert missing.json() == envelope(404, "NotFoundException", "Record not found")
    assert error_of(api.get(f"/rest/people/{uuid.uuid4()}"), 404) == "Record not found"


def test_batch_create_shares_one_timestamp_and_enforces_cap(api: httpx.Client) -> None:
    batch = [{"emails": {"primaryEmail": new_email()}, "city": "Lyon"} for _ in range(60)]
    response = api.post("/rest/batch/people", json=batch)
    assert response.status_code == 201
    people = response.json()["data"]["people"]
    assert [p["emails"]["primaryEmail"] for p in people] == [b["emails"]["primaryEmail"] for b in batch]
    assert len({p["updatedAt"] for p in people}) == 1
    too_many = api.post("/rest/batch/people", json=batch + [{"city": "Lyon"}])
    assert error_of(too_many, 400) == "Maximum number of records to upsert is 60."
    fresh_email = new_email()
    with_duplicate = [{"emails": {"primaryEmail": fresh_email}}, batch[0]]
    rejected = api.post("/rest/batch/people", json=with_duplicate)
    assert error_of(rejected, 400) == "A duplicate entry was detected"
    assert filtered_ids(api, f'emails.primaryEmail[eq]:"{fresh_email}"') == set()  # nothing of the batch kept


def test_update_always_bumps_updated_at(api: httpx.Client) -> None:
    person = create_person(api, city="Paris")
    first = api.patch(f"/rest/people/{person['id']}", json={"city": "Paris"})
    assert first.status_code == 200
    updated = first.json()["data"]["updatePerson"]
    assert updated["updatedAt"] > person["updatedAt"] and updated["createdAt"] == person["createdAt"]
    since = updated["updatedAt"]
    assert person["id"] in filtered_ids(api, f'updatedAt[gte]:"{since}"')
    put = api.put(f"/rest/people/{person['id']}", json={"jobTitle": "CEO"}).json()["data"]["updatePerson"]
    assert put["jobTitle"] == "CEO" and put["city"] == "Paris"


def test_soft_delete_restore_and_destroy(api: httpx.Client) -> None:
    person = create_person(api)
    path = f"/rest/people/{person['id']}"
    deleted = api.delete(path, params={"soft_delete": "true"})
    assert deleted.json() == {"data": {"deletePerson": {"id": person["id"]}}}
    assert api.get(path).status_code == 404
    assert person["id"] not in filtered_ids(api, f'id[eq]:"{person["id"]}"')
    only_trashed = f'and(id[eq]:"{person["id"]}",deletedAt[is]:NOT_NULL)'
    trashed = api.get("/rest/people", params={"filter": only_trashed}).json()
    row = trashed["data"]["people"][0]
    assert row["deletedAt"] is not None and row["updatedAt"] == row["deletedAt"] > person["updatedAt"]
    both = f'and(id[eq]:"{person["id"]}",or(deletedAt[is]:NULL,deletedAt[is]:NOT_NULL))'
    assert filtered_ids(api, both) == {person["id"]}

    restored = api.patch(f"{path}/restore").json()["data"]["restorePerson"]
    assert restored["deletedAt"] is None and restored["updatedAt"] > row["updatedAt"]
    api.delete(path, params={"soft_delete": "true"})
    legacy = api.patch(f"/rest/restore/people/{person['id']}")
    assert legacy.status_code == 200 and api.get(path).status_code == 200

    destroyed = api.delete(path)  # no soft_delete=true: hard delete (§5.5)
    assert destroyed.json() == {"data": {"deletePerson": {"id": person["id"]}}}
    assert filtered_ids(api, both) == set()


def test_upsert_matches_by_unique_fields_and_revives(api: httpx.Client) -> None:
    person = create_person(api, city="Paris")
    email = person["emails"]["primaryEmail"]
    api.delete(f"/rest/people/{person['id']}", params={"soft_delete": "true"})
    upsert = {"upsert": "true"}
    revive = {"emails": {"primaryEmail": email.upper()}, "city": "Oslo"}
    upserted = api.post("/rest/people", params=upsert, json=revive)
    assert upserted.status_code == 201
    record = upserted.json()["data"]["createPerson"]
    assert record["id"] == person["id"] and record["city"] == "Oslo" and record["deletedAt"] is None
    assert record["createdBy"] == person["createdBy"]

    items = [{"id": person["id"], "jobTitle": "CFO"}, {"emails": {"primaryEmail": new_email()}}]
    by_id = api.post("/rest/batch/people", params=upsert, json=items)
    first, second = by_id.json()["data"]["people"]
    assert first["id"] == person["id"] and first["jobTitle"] == "CFO" and second["id"] != person["id"]

    conflicting = {"id": person["id"], "emails": {"primaryEmail": second["emails"]["primaryEmail"]}}
    ambiguous = api.post("/rest/people", params=upsert, json=conflicting)
    assert error_of(ambiguous, 400).startswith(
        f"Multiple records found with the same unique field values for id (id: {person['id']}); emails ("
    )

    acme = {"name": "Acme", "domainName": {"primaryLinkUrl": "https://Acme-Upsert.example/"}}
    company = api.post("/rest/companies", json=acme).json()["data"]["createCompany"]
    same_domain = {"name": "Acme Inc", "domainName": {"primaryLinkUrl": "HTTPS://acme-upsert.EXAMPLE"}}
    again = api.post("/rest/companies", params=upsert, json=same_domain)
    assert again.json()["data"]["createCompany"]["id"] == company["id"]


# --- §8 rate limiting and fault knobs -------------------------------------------------------------------


def test_rate_limit_429_with_headers_and_legacy_variant() -> None:
    with run_standin(rate_limit_per_minute=3) as server, server.client() as api:
        assert [api.get("/rest/people").status_code for _ in range(3)] == [200, 200, 200]
        limited = api.get("/rest/people")
        assert limited.status_code == 429
        body = limited.json()
        assert body["error"] == "RATE_LIMITED"
        assert body["messages"] == ["Rate limit exceeded for apiKey: 3 requests per 60s."]
        retry_after = int(limited.headers["Retry-After"])
        assert retry_after >= 1 and body["retryAfterSeconds"] == retry_after
        assert limited.headers["X-RateLimit-Limit"] == "3" and limited.headers["X-RateLimit-Remaining"] == "0"
        assert int(limited.headers["X-RateLimit-Reset"]) > time.time()

        server.set_faults(rate_limit_style="legacy-400")
        legacy = api.get("/rest/people")
        assert legacy.json() == envelope(400, "BadRequestException", "Limit reached (3 tokens per 60000 ms)")
        assert server.stats()["rate_limited"] == 2


def test_fault_knobs(standin: StandinServer, api: httpx.Client) -> None:
    before = standin.stats()
    standin.set_faults(fail_next=2, throttle_next=1)
    statuses = [api.get("/rest/companies").status_code for _ in range(4)]
    assert statuses == [500, 500, 429, 200]
    standin.set_faults(fail_after_write_next=1)
    email = new_email()
    assert api.post("/rest/people", json={"emails": {"primaryEmail": email}}).status_code == 500
    assert len(filtered_ids(api, f'emails.primaryEmail[eq]:"{email}"')) == 1  # written despite the 500
    after = standin.stats()
    assert after["rate_limited"] == before["rate_limited"] + 1
    assert after["faults_injected"] == before["faults_injected"] + 3
    bad_knob = api.post("/_standin/faults", json={"no_such_knob": 1})
    assert bad_knob.status_code == 400


# --- §9 webhooks --------------------------------------------------------------------------------------


def verify_twenty(raw_body: bytes, headers: dict[str, str], secret: str) -> bool:
    """The receiver check of §9.3, on the raw request bytes."""
    timestamp = headers["X-Twenty-Webhook-Timestamp"]
    if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 300_000:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b":" + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Twenty-Webhook-Signature"])


@pytest.fixture()
def person_webhook(
    standin: StandinServer, api: httpx.Client, receiver: WebhookReceiver
) -> Iterator[dict[str, Any]]:
    created = api.post(
        "/rest/metadata/webhooks",
        json={"targetUrl": receiver.url, "operations": ["person.*"], "description": "t", "secret": "s3cr3t"},
    )
    assert created.status_code == 201
    webhook = created.json()
    yield webhook
    api.delete(f"/rest/metadata/webhooks/{webhook['id']}")
    standin.set_faults(webhook_duplicates=1, restored_as_deleted=False)


def test_webhook_delivery_is_signed(
    api: httpx.Client, receiver: WebhookReceiver, person_webhook: dict[str, Any]
) -> None:
    assert api.get(f"/rest/metadata/webhooks/{person_webhook['id']}").json()["targetUrl"] == receiver.url
    person = create_person(api, city="Paris")
    delivery = receiver.next()
    assert delivery.path == "/hooks/twenty"
    assert verify_twenty(delivery.body, delivery.headers, "s3cr3t")
    assert len(delivery.headers["X-Twenty-Webhook-Nonce"]) == 32
    payload = json.loads(delivery.body)
    assert list(payload) == [
        "targetUrl", "eventName", "objectMetadata", "workspaceId",
        "webhookId", "eventDate", "apiKeyId", "record",
    ]
    assert payload["eventName"] == "person.created" and payload["record"] == person
    assert payload["objectMetadata"]["nameSingular"] == "person"
    assert payload["webhookId"] == person_webhook["id"]
    assert not verify_twenty(delivery.body + b" ", delivery.headers, "s3cr3t")

    api.post("/rest/companies", json={"name": "No webhook for companies"})
    assert receiver.drain() == []


def test_webhook_duplicates_and_restore_as_delete_knobs(
    standin: StandinServer, api: httpx.Client, receiver: WebhookReceiver, person_webhook: dict[str, Any]
) -> None:
    person = create_person(api)
    receiver.next()
    standin.set_faults(webhook_duplicates=3)
    api.patch(f"/rest/people/{person['id']}", json={"jobTitle": "CTO"})
    copies = [receiver.next() for _ in range(3)]
    payloads = [json.loads(copy.body) for copy in copies]
    assert {p["eventName"] for p in payloads} == {"person.updated"}
    assert all(p["updatedFields"] == ["jobTitle"] for p in payloads)
    assert all(verify_twenty(c.body, c.headers, "s3cr3t") for c in copies)
    assert receiver.drain() == []

    standin.set_faults(webhook_duplicates=1, restored_as_deleted=True)
    api.delete(f"/rest/people/{person['id']}", params={"soft_delete": "true"})
    api.patch(f"/rest/people/{person['id']}/restore")
    events = [json.loads(d.body) for d in (receiver.next(), receiver.next())]
    assert sorted(e["eventName"] for e in events) == ["person.deleted", "person.deleted"]
    assert sorted(e["record"]["deletedAt"] is None for e in events) == [False, True]
    api.delete(f"/rest/people/{person['id']}")
    destroyed = json.loads(receiver.next().body)
    assert destroyed["eventName"] == "person.destroyed" and destroyed["record"]["id"] == person["id"]
    assert standin.stats()["webhooks_sent"] >= 7


# --- state file and seeding ----------------------------------------------------------------------------


def test_state_file_survives_restart_and_seeding_is_idempotent(tmp_path: Any) -> None:
    state_file = tmp_path / "twenty.sqlite"
    options = {"state_file": state_file, "seed_companies": 5, "seed_people": 3}
    with run_standin(**options) as server, server.client() as api:
        seeded = api.get("/rest/companies").json()["data"]["companies"]
        created = api.post("/rest/companies", json={"name": "Kept"}).json()["data"]["createCompany"]
        api.delete(f"/rest/people/{person_row(0, 5)['id']}")
        api.post("/rest/metadata/webhooks", json={"targetUrl": "http://127.0.0.1:9/hook"})
    with run_standin(**options) as server, server.client() as api:
        companies = api.get("/rest/companies").json()["data"]["companies"]
        assert {c["id"] for c in companies} == {c["id"] for c in seeded} | {created["id"]}
        assert api.get("/rest/people").json()["totalCount"] == 2  # a destroyed seed row stays destroyed
        assert len(api.get("/rest/metadata/webhooks").json()) == 1
    with run_standin(seed_companies=5) as fresh, fresh.client() as api:
        fresh_companies = api.get("/rest/companies").json()["data"]["companies"]
        assert {c["id"] for c in fresh_companies} == {c["id"] for c in seeded}
