"""Pandera contracts: readable reasons per rejected row, canonical valid rows, a batch never lost to a few."""

from __future__ import annotations

from typing import Any

from sync_pipeline.model.contracts import validate_records
from sync_pipeline.model.entities import entity

PEOPLE, COMPANIES, OPPORTUNITIES = entity("people"), entity("companies"), entity("opportunities")
ID = "6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11"
COMPANY_ID = "0a7d3c1e-5b2f-4c6a-8e9d-1f2a3b4c5d6e"


def person(**values: Any) -> dict[str, Any]:
    return {"id": ID, "first_name": "Ada", "email": "ada@example.com", **values}


def reasons(entity_rows: list[dict[str, Any]], e: Any = PEOPLE) -> dict[int, str]:
    return {r.index: r.reason for r in validate_records(e, entity_rows).rejected}


def test_valid_rows_come_back_canonical_with_their_id() -> None:
    row = {"id": ID.upper(), "first_name": "Ada", "last_name": "", "email": " ADA@Example.COM ",
           "phone": "+44 20 7946 0000", "linkedin_url": "HTTPS://LinkedIn.com/in/ada/", "company_id": COMPANY_ID}
    result = validate_records(PEOPLE, [row])
    assert result.rejected == []
    assert result.valid == [(0, {"first_name": "Ada", "last_name": None, "email": "ada@example.com",
                                 "phone": "+44 20 7946 0000", "job_title": None, "city": None,
                                 "linkedin_url": "https://linkedin.com/in/ada", "company_id": COMPANY_ID,
                                 "id": ID})]


def test_opportunity_values_are_canonicalised() -> None:
    row = {"id": ID, "name": "Deal", "stage": "proposal", "amount": "1500.50",
           "close_date": "2025-06-30T18:00:00-04:00"}
    ((_, record),) = validate_records(OPPORTUNITIES, [row]).valid
    assert (record["stage"], record["amount"], record["close_date"]) == ("PROPOSAL", "1500.5",
                                                                         "2025-06-30T22:00:00.000000Z")


def test_empty_batch() -> None:
    result = validate_records(PEOPLE, [])
    assert (result.valid, result.rejected) == ([], [])


def test_required_field_missing() -> None:
    assert reasons([person(first_name=None)]) == {0: "first_name: required field is missing"}
    row = person()
    del row["email"]
    assert reasons([row]) == {0: "email: required field is missing"}
    assert reasons([{"first_name": "Ada", "email": "ada@example.com"}]) == {0: "id: required field is missing"}


def test_required_string_empty_or_blank() -> None:
    assert reasons([person(first_name=""), person(first_name="   ")]) == {
        0: "first_name: required field is empty", 1: "first_name: required field is empty"}
    assert reasons([person(email="")]) == {0: "email: required field is empty"}


def test_optional_empty_string_is_none() -> None:
    ((_, record),) = validate_records(PEOPLE, [person(last_name="", city="  ")]).valid
    assert (record["last_name"], record["city"]) == (None, None)


def test_malformed_email() -> None:
    assert reasons([person(email="ada.example.com")]) == {
        0: "email: 'ada.example.com' is not a well-formed e-mail address"}


def test_bad_uuid_in_id_and_reference() -> None:
    assert reasons([person(id="42")]) == {0: "id: '42' is not a valid uuid"}
    assert reasons([person(company_id="acme")]) == {0: "company_id: 'acme' is not a valid uuid"}


def test_bad_enum() -> None:
    row = {"id": ID, "name": "Deal", "stage": "won"}
    assert reasons([row], OPPORTUNITIES) == {
        0: "stage: 'won' is not one of NEW, SCREENING, MEETING, PROPOSAL, CUSTOMER"}


def test_negative_integer() -> None:
    company = {"id": ID, "name": "Acme", "ideal_customer_profile": True}
    assert reasons([{**company, "employees": -5}], COMPANIES) == {0: "employees: '-5' is not non-negative"}
    assert reasons([{**company, "employees": 0}, {**company, "employees": "12"}], COMPANIES) == {}


def test_a_non_integer_is_a_type_failure_not_a_sign_failure() -> None:
    company = {"id": ID, "name": "Acme", "ideal_customer_profile": True, "employees": "1.5"}
    assert reasons([company], COMPANIES) == {0: "employees: '1.5' is not a valid integer"}


def test_unknown_columns_are_ignored_and_not_carried_over() -> None:
    result = validate_records(PEOPLE, [person(nickname="Countess", sync_version=3)])
    assert result.rejected == []
    ((_, record),) = result.valid
    assert set(record) == {"id", *PEOPLE.field_names}


def test_several_failures_on_one_row_make_one_readable_reason() -> None:
    row = {"id": "bad", "first_name": "", "email": "nope", "company_id": "acme"}
    (rejected,) = validate_records(PEOPLE, [row]).rejected
    assert rejected.index == 0
    assert rejected.raw is row
    assert rejected.reason == ("id: 'bad' is not a valid uuid; first_name: required field is empty; "
                               "email: 'nope' is not a well-formed e-mail address; "
                               "company_id: 'acme' is not a valid uuid")
    assert len(rejected.failures) == 4
    assert {f["column"] for f in rejected.failures} == {"id", "first_name", "email", "company_id"}


def test_a_batch_with_a_few_invalid_rows_keeps_the_valid_ones() -> None:
    rows = [person(id=f"00000000-0000-0000-0000-{i:012d}", email=f"p{i}@example.com") for i in range(10)]
    rows[2]["email"] = "broken"
    rows[7]["first_name"] = None
    result = validate_records(PEOPLE, rows)
    assert reasons(rows) == {2: "email: 'broken' is not a well-formed e-mail address",
                             7: "first_name: required field is missing"}
    assert [i for i, _ in result.valid] == [0, 1, 3, 4, 5, 6, 8, 9]
    assert [r["email"] for _, r in result.valid] == [f"p{i}@example.com" for i in (0, 1, 3, 4, 5, 6, 8, 9)]


def test_a_malformed_link_rejects_only_its_own_row() -> None:
    rows = [person(), person(id=COMPANY_ID, linkedin_url="http://[linkedin.com/in/ada")]
    result = validate_records(PEOPLE, rows)
    assert [i for i, _ in result.valid] == [0]
    assert [r.index for r in result.rejected] == [1]
