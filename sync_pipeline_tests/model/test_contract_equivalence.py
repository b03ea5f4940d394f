"""The contracts' verdicts pinned on a mixed batch per entity: every reason of every rejected row, the valid
rows' canonical records and the failure cases pandera reports. The expectations are the contracts' answers
before their checks were vectorised (`bench/contracts.py`), so a faster check that judges one value
differently fails here."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pandera.pandas as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipeline.model.canonical import canonical_record, canonical_value
from sync_pipeline.model.contracts import failure_records, frame_for, schema_for, validate_records
from sync_pipeline.model.entities import Entity, FieldType, entity

PEOPLE, COMPANIES, OPPORTUNITIES = entity("people"), entity("companies"), entity("opportunities")
ID = "6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11"
CO = "0a7d3c1e-5b2f-4c6a-8e9d-1f2a3b4c5d6e"
NAN = float("nan")
NUL = "contains a NUL character, which Postgres cannot store"


def person(**values: Any) -> dict[str, Any]:
    return {"id": ID, "first_name": "Ada", "email": "ada@example.com", **values}


def company(**values: Any) -> dict[str, Any]:
    return {"id": CO, "name": "Acme", "ideal_customer_profile": True, **values}


def opportunity(**values: Any) -> dict[str, Any]:
    return {"id": ID, "name": "Deal", "stage": "NEW", **values}


PEOPLE_ROWS = [
    person(),
    {"id": ID.upper(), "first_name": " Ada ", "last_name": "Lovelace", "email": " ADA@Example.COM\n",
     "phone": "+44 20 7946 0000", "job_title": None, "city": "London",
     "linkedin_url": "HTTPS://LinkedIn.com/in/ada/", "company_id": CO.upper()},
    person(first_name="Ad\x00a"),
    person(last_name="Love\x00lace"),
    person(email="ada\x00@example.com"),
    person(first_name="  "),
    person(email=""),
    person(email="ada.example.com"),
    person(first_name=None),
    person(last_name=None, phone=None, job_title=None, city=None, linkedin_url=None, company_id=None),
    person(first_name=True, last_name=False),  # 10
    person(last_name=1.5, city=NAN, phone=0),
    person(city=42, phone="0123", job_title="007"),
    person(company_id=12345),
    person(id="{" + ID.upper() + "}"),
    person(id="urn:uuid:" + ID),
    person(id=uuid.UUID(ID), company_id=uuid.UUID(CO)),
    person(email=42),
    person(company_id=CO + "\x00"),
    person(company_id=True),
    {"id": ID, "first_name": "Ada"},  # 20
    person(first_name=0, last_name=0.0),
    person(email=NAN),
    person(first_name="\u3000\t"),
    person(first_name="\u200b"),
    person(job_title=Decimal("1.50"), city=datetime(2025, 1, 2, tzinfo=timezone.utc)),
    person(email="ADA@EXAMPLE.COM"),
    person(id="42", first_name="", email="nope", company_id="acme", last_name="\x00"),
    person(id=None),
    person(id="", email="a@b.c"),  # a blank id passes the contract (as it did before)
    person(id=ID + "\n", linkedin_url="http://[linkedin.com/in/ada"),  # 30
    person(id="+" + ID.replace("-", "")[1:]),  # uuid.UUID reads it (int(..., 16) takes a sign)
    person(id=ID.replace("-", "_")),
    person(email="a@b"),
    person(email="a b@c.d"),
    person(email=b"ada@example.com"),
    person(first_name=b"Ada\x00"),
    person(first_name=["Ada"], last_name={"x": 1}),
]
PEOPLE_REASONS = {
    2: f"first_name: {NUL}",
    3: f"last_name: {NUL}",
    4: f"email: {NUL}",
    5: "first_name: required field is empty",
    6: "email: required field is empty",
    7: "email: 'ada.example.com' is not a well-formed e-mail address",
    8: "first_name: required field is missing",
    13: "company_id: '12345' is not a valid uuid",
    17: "email: '42' is not a well-formed e-mail address",
    18: f"company_id: {NUL}",
    19: "company_id: 'True' is not a valid uuid",
    20: "email: required field is missing",
    22: "email: required field is missing",
    23: "first_name: required field is empty",
    27: ("company_id: 'acme' is not a valid uuid; email: 'nope' is not a well-formed e-mail address; "
         f"id: '42' is not a valid uuid; last_name: {NUL}; first_name: required field is empty"),
    28: "id: required field is missing",
    30: ("linkedin_url: 'http://[linkedin.com/in/ada' is not a valid url; "
         "id: '6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11\\n' is not a valid uuid"),
    32: "id: '6f1c2a52_0b8e_4d8e_9a51_3c1f7a0e2b11' is not a valid uuid",
    33: "email: 'a@b' is not a well-formed e-mail address",
    34: "email: 'a b@c.d' is not a well-formed e-mail address",
}

COMPANY_ROWS = [
    company(),
    company(employees=-5), company(employees="-5"), company(employees="12"), company(employees="1.5"),
    company(employees=3.0), company(employees=True), company(employees=-0.0), company(employees="1e3"),
    company(employees="-1e3"), company(employees=NAN), company(employees=float("inf")),  # 11
    company(employees="abc"), company(employees=10**30), company(employees=-(10**30)),
    company(employees=" 7 "),
    company(employees="-0"), company(employees=Decimal("-2")), company(employees=-2.5),
    company(employees="\x00-3"),  # 19: the NUL's reason only (the sign check cannot read it)
    company(ideal_customer_profile="yes"), company(ideal_customer_profile="maybe"),
    company(ideal_customer_profile=None), company(ideal_customer_profile=1),
    company(ideal_customer_profile=2),
    company(ideal_customer_profile=1.0), company(ideal_customer_profile=""),
    company(ideal_customer_profile=False),  # 27
    company(annual_recurring_revenue="1,000"), company(annual_recurring_revenue=Decimal("12.50")),
    company(annual_recurring_revenue="NaN"), company(annual_recurring_revenue=1.5),
    company(annual_recurring_revenue=True),
    company(domain_name="http://[bad"), company(domain_name="Acme.COM/"), company(domain_name=7),  # 33
    company(name=" ", currency_code="\x00", address_city=12, address_country=None),
    company(name=None, ideal_customer_profile=None, employees=-1),
]
COMPANY_REASONS = {
    1: "employees: '-5' is not non-negative",
    2: "employees: '-5' is not non-negative",
    4: "employees: '1.5' is not a valid integer",
    6: "employees: 'True' is not a valid integer",
    9: "employees: '-1e3' is not non-negative",
    11: "employees: 'inf' is not a valid integer",
    12: "employees: 'abc' is not a valid integer",
    14: "employees: '-1000000000000000000000000000000' is not non-negative",
    17: "employees: '-2' is not non-negative",
    18: "employees: '-2.5' is not a valid integer",
    19: f"employees: {NUL}",
    21: "ideal_customer_profile: 'maybe' is not a valid boolean",
    22: "ideal_customer_profile: required field is missing",
    24: "ideal_customer_profile: '2' is not a valid boolean",
    25: "ideal_customer_profile: '1.0' is not a valid boolean",
    26: "ideal_customer_profile: required field is empty",
    28: "annual_recurring_revenue: '1,000' is not a valid numeric",
    30: "annual_recurring_revenue: 'NaN' is not a valid numeric",
    32: "annual_recurring_revenue: 'True' is not a valid numeric",
    33: "domain_name: 'http://[bad' is not a valid url",
    36: f"currency_code: {NUL}; name: required field is empty",
    37: ("name: required field is missing; ideal_customer_profile: required field is missing; "
         "employees: '-1' is not non-negative"),
}

OPPORTUNITY_ROWS = [
    opportunity(),
    opportunity(stage="proposal", amount="1500.50", close_date="2025-06-30T18:00:00-04:00"),
    opportunity(stage="won"), opportunity(stage=""), opportunity(stage=None), opportunity(stage=1),
    opportunity(stage="PRO\x00POSAL"), opportunity(stage=" customer "), opportunity(stage=True),
    opportunity(close_date=datetime(2025, 1, 1, 12)), opportunity(close_date=date(2025, 1, 1)),  # 9
    opportunity(close_date="not a date"), opportunity(close_date="10000-01-01"),
    opportunity(close_date=12345),
    opportunity(close_date="9999-12-31T23:00:00-05:00"), opportunity(close_date="2025-01-01 BC"),  # 14
    opportunity(amount="-3.25", company_id=CO, point_of_contact_id=ID.upper()),
    opportunity(amount="abc", company_id="x", point_of_contact_id=""),
    opportunity(name="", stage="", amount=None),
]
OPPORTUNITY_REASONS = {
    2: "stage: 'won' is not one of NEW, SCREENING, MEETING, PROPOSAL, CUSTOMER",
    3: "stage: required field is empty",
    4: "stage: required field is missing",
    5: "stage: '1' is not one of NEW, SCREENING, MEETING, PROPOSAL, CUSTOMER",
    6: f"stage: {NUL}",
    8: "stage: 'True' is not one of NEW, SCREENING, MEETING, PROPOSAL, CUSTOMER",
    11: "close_date: 'not a date' is not a valid timestamp",
    12: "close_date: '10000-01-01' is not a valid timestamp",
    13: "close_date: '12345' is not a valid timestamp",
    14: "close_date: '9999-12-31T23:00:00-05:00' is not a valid timestamp",
    15: "close_date: '2025-01-01 BC' is not a valid timestamp",
    17: "amount: 'abc' is not a valid numeric; company_id: 'x' is not a valid uuid",
    18: "name: required field is empty; stage: required field is empty",
}


def canonical(e: Entity, row: dict[str, Any], fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {**canonical_record(e, row, fields), "id": canonical_value(FieldType.UUID, row["id"])}


@pytest.mark.parametrize(("e", "rows", "expected"), [(PEOPLE, PEOPLE_ROWS, PEOPLE_REASONS),
                                                     (COMPANIES, COMPANY_ROWS, COMPANY_REASONS),
                                                     (OPPORTUNITIES, OPPORTUNITY_ROWS, OPPORTUNITY_REASONS)],
                         ids=["people", "companies", "opportunities"])
def test_a_mixed_batch_gets_the_same_reasons_and_records(e: Entity, rows: list[dict[str, Any]],
                                                         expected: dict[int, str]) -> None:
    result = validate_records(e, rows)
    assert {r.index: r.reason for r in result.rejected} == expected
    assert [r.index for r in result.rejected] == sorted(expected)
    assert all(r.raw is rows[r.index] for r in result.rejected)
    assert [i for i, _ in result.valid] == [i for i in range(len(rows)) if i not in expected]
    assert [record for _, record in result.valid] == [canonical(e, rows[i]) for i, _ in result.valid]
    assert [list(record) for _, record in result.valid] == [[*e.field_names, "id"]] * len(result.valid)


def test_a_store_carrying_some_fields_is_judged_on_those_only() -> None:
    fields = ("first_name", "email")
    result = validate_records(PEOPLE, PEOPLE_ROWS, fields)
    keep = (2, 4, 5, 6, 7, 8, 17, 20, 22, 23, 28, 32, 33, 34)
    assert {r.index: r.reason for r in result.rejected} == {i: PEOPLE_REASONS[i] for i in keep} | {
        27: ("id: '42' is not a valid uuid; email: 'nope' is not a well-formed e-mail address; "
             "first_name: required field is empty"),
        30: "id: '6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11\\n' is not a valid uuid"}
    assert [record for _, record in result.valid] == [canonical(PEOPLE, PEOPLE_ROWS[i], fields)
                                                      for i, _ in result.valid]


@pytest.mark.parametrize(("column", "values", "expected"), [
    ("first_name", ["Ada", "Grace\x00", "Bob"], {1: f"first_name: {NUL}"}),
    ("first_name", ["Ada", " ", ""], {1: "first_name: required field is empty",
                                       2: "first_name: required field is empty"}),
    ("first_name", ["Ada", "Grace", "\u200b"], {}),
    ("first_name", [1, 2.5, True], {}),
    ("last_name", ["\x00", "\x00", None], {0: f"last_name: {NUL}", 1: f"last_name: {NUL}"}),
    ("email", [ID + "@example.com", "x@y.z", "A@B.C"], {}),
    ("email", ["a@b.c", "a@b.c.", "a@@b.c"], {2: "email: 'a@@b.c' is not a well-formed e-mail address"}),
    ("id", [ID, ID.upper(), CO], {}),
    ("id", [ID, ID[:-1] + "g", CO[:-1]], {1: f"id: '{ID[:-1]}g' is not a valid uuid",
                                          2: f"id: '{CO[:-1]}' is not a valid uuid"}),
], ids=["nul", "blank", "zero-width", "non-text", "nul-only", "emails", "bad-emails", "ids", "bad-ids"])
def test_one_kind_of_value_per_column(column: str, values: list[Any], expected: dict[int, str]) -> None:
    """Whole columns of text (or of no text): what a check judges a column at once by."""
    rows = [person(**{column: value}) for value in values]
    assert {r.index: r.reason for r in validate_records(PEOPLE, rows).rejected} == expected


@pytest.mark.parametrize(("values", "expected"), [
    ([3, 0, 12], {}),
    ([3, -5, 12], {1: "employees: '-5' is not non-negative"}),
    ([True, False, 1], {0: "employees: 'True' is not a valid integer",
                        1: "employees: 'False' is not a valid integer"}),
    ([2**63, -(2**63), 10**400], {1: f"employees: '{-(2**63)}' is not non-negative"}),
])
def test_integer_columns(values: list[Any], expected: dict[int, str]) -> None:
    rows = [company(employees=value) for value in values]
    assert {r.index: r.reason for r in validate_records(COMPANIES, rows).rejected} == expected


def test_the_failure_cases_the_contract_checks_sample() -> None:
    rows = [*PEOPLE_ROWS[:10], person(first_name="x\x00", company_id=CO + "\x00"), {"first_name": "  "}]
    with pytest.raises(pa.errors.SchemaErrors) as raised:
        schema_for(PEOPLE).validate(frame_for(PEOPLE, rows), lazy=True)
    cases = failure_records(raised.value)
    assert list(cases.columns) == ["schema_context", "column", "check", "check_number", "failure_case",
                                   "index"]
    assert [tuple(case) for case in cases.itertuples(index=False)] == [
        ("Column", "id", "not_nullable", None, "None", 11),
        ("Column", "first_name", "not_nullable", None, "None", 8),
        ("Column", "first_name", "free of NUL characters", 0, "Ad\x00a", 2),
        ("Column", "first_name", "free of NUL characters", 0, "x\x00", 10),
        ("Column", "first_name", "non-empty", 1, "  ", 5),
        ("Column", "first_name", "non-empty", 1, "  ", 11),
        ("Column", "last_name", "free of NUL characters", 0, "Love\x00lace", 3),
        ("Column", "email", "not_nullable", None, "None", 11),
        ("Column", "email", "a well-formed e-mail address", 0, "ada.example.com", 7),
        ("Column", "email", "free of NUL characters", 1, "ada\x00@example.com", 4),
        ("Column", "email", "non-empty", 2, "", 6),
        ("Column", "company_id", "free of NUL characters", 1, f"{CO}\x00", 10),
    ]


def test_the_failures_of_a_rejected_row_are_pandera_s_cases() -> None:
    (rejected,) = validate_records(PEOPLE, [PEOPLE_ROWS[27]]).rejected
    assert [(f["column"], f["check"], f["check_number"], f["failure_case"], f["index"])
            for f in rejected.failures] == [
        ("id", "a valid uuid", 0, "42", 0),
        ("first_name", "non-empty", 1, "", 0),
        ("last_name", "free of NUL characters", 0, "\x00", 0),
        ("email", "a well-formed e-mail address", 0, "nope", 0),
        ("company_id", "a valid uuid", 0, "acme", 0),
    ]


# What the contracts take as already canonical without asking the converter (lower-case uuids, plain
# e-mails): generated here, the converter must agree value by value.
CANONICAL_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CANONICAL_EMAIL = r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.from_regex(CANONICAL_UUID, fullmatch=True),
                          st.from_regex(CANONICAL_EMAIL, fullmatch=True), st.text(max_size=8),
                          st.one_of(st.none(), st.text(max_size=8), st.integers())),
                min_size=1, max_size=6))
def test_values_taken_as_canonical_are_the_converter_s_own(people: list[tuple[str, str, str, Any]]) -> None:
    rows = [person(id=i, email=email, first_name=name, city=city) for i, email, name, city in people]
    result = validate_records(PEOPLE, rows)
    assert [record for _, record in result.valid] == [canonical(PEOPLE, rows[i]) for i, _ in result.valid]
    assert {r.index for r in result.rejected} == {
        n for n, (_, _, name, city) in enumerate(people)
        if "\x00" in name or not name.strip() or (isinstance(city, str) and "\x00" in city)}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(), st.integers(-(2**63) - 2, 2**63 + 2)), st.booleans()),
                min_size=1, max_size=6))
def test_integers_and_booleans_taken_as_canonical(companies: list[tuple[int, bool]]) -> None:
    rows = [company(employees=n, ideal_customer_profile=icp) for n, icp in companies]
    result = validate_records(COMPANIES, rows)
    assert [record for _, record in result.valid] == [canonical(COMPANIES, rows[i]) for i, _ in result.valid]
    assert {r.index: r.reason for r in result.rejected} == {
        i: f"employees: '{n}' is not non-negative" for i, (n, _) in enumerate(companies) if n < 0}
