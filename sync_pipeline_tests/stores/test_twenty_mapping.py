"""Mapping between Twenty records and canonical records: pure round trips, then through the stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipeline.model.canonical import canonical_record, format_decimal, format_timestamp
from sync_pipeline.model.entities import ENTITIES, Entity, Field, FieldType, entity
from sync_pipeline.sandbox.twenty.server import run_standin
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.mapping import (
    MappingError,
    mapped_columns,
    to_canonical,
    to_twenty,
    twenty_object,
)

COMPANIES, PEOPLE, OPPORTUNITIES = entity("companies"), entity("people"), entity("opportunities")


def same_ids(entity_name: str, canonical_id: str) -> str:
    return canonical_id


def _value_strategy(f: Field) -> st.SearchStrategy[Any]:
    values: dict[FieldType, st.SearchStrategy[Any]] = {
        # Canonical text holds no NUL (Postgres cannot store it: such records are quarantined, not mapped).
        FieldType.TEXT: st.text(st.characters(blacklist_characters="\x00"), min_size=1).filter(str.strip),
        FieldType.URL: st.from_regex(r"https://[A-Za-z0-9]{1,12}\.(com|io)(/[a-z0-9]{1,8})?", fullmatch=True),
        FieldType.EMAIL: st.emails(),
        FieldType.UUID: st.uuids().map(str),
        FieldType.INTEGER: st.integers(-(10**12), 10**12),
        # Twenty keeps amounts in micros: six decimals are what it can hold exactly.
        FieldType.NUMERIC: st.decimals(-(10**12), 10**12, places=6, allow_nan=False, allow_infinity=False),
        FieldType.BOOLEAN: st.booleans(),
        FieldType.TIMESTAMP: st.datetimes(datetime(1, 1, 2), timezones=st.just(timezone.utc)).map(
            format_timestamp
        ),
        FieldType.ENUM: st.sampled_from(f.choices or ("X",)),
    }
    return st.none() | values[f.type]


@st.composite
def canonical_records(draw: st.DrawFn, e: Entity) -> dict[str, Any]:
    """Any record in canonical form, as the hub holds it."""
    raw = {f.name: draw(_value_strategy(f)) for f in e.fields}
    return {"id": draw(st.uuids().map(str)), **canonical_record(e, raw)}


# --- pure mapping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("e", ENTITIES, ids=lambda e: e.name)
def test_every_registry_field_is_mapped_once(e: Entity) -> None:
    columns = mapped_columns(e)
    assert sorted(columns) == sorted(e.field_names)
    assert len(columns) == len(set(columns))


@pytest.mark.parametrize("e", ENTITIES, ids=lambda e: e.name)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_canonical_to_twenty_to_canonical_is_lossless(e: Entity, data: st.DataObject) -> None:
    record = data.draw(canonical_records(e))
    assert to_canonical(e, to_twenty(e, record, same_ids)) == record


def test_to_canonical_reads_composites_and_treats_empty_strings_as_null() -> None:
    twenty_person = {  # the §4.2 example of docs/twenty-api.md, plus "" where older releases send it
        "id": "5f8a0c9e-1d2b-4c3a-9e8f-0a1b2c3d4e5f",
        "name": {"firstName": "Ada", "lastName": ""},
        "emails": {"primaryEmail": "ada@example.com", "additionalEmails": None},
        "linkedinLink": {
            "primaryLinkUrl": "https://www.linkedin.com/in/ada", "primaryLinkLabel": "", "secondaryLinks": []
        },
        "jobTitle": "CTO",
        "phones": {"primaryPhoneNumber": "612345678", "primaryPhoneCallingCode": "+33"},
        "city": "",
        "companyId": "0b8d6f52-8c3e-4f31-9a51-5b9b9f7f3a10",
        "updatedAt": "2025-11-04T16:01:02.341Z",
    }
    assert to_canonical(PEOPLE, twenty_person) == {
        "id": "5f8a0c9e-1d2b-4c3a-9e8f-0a1b2c3d4e5f",
        "first_name": "Ada",
        "last_name": None,
        "email": "ada@example.com",
        "phone": "+33 612345678",
        "job_title": "CTO",
        "city": None,
        "linkedin_url": "https://www.linkedin.com/in/ada",
        "company_id": "0b8d6f52-8c3e-4f31-9a51-5b9b9f7f3a10",
    }


def test_null_composites_and_a_calling_code_without_number_are_empty() -> None:
    record = {"id": str(uuid.uuid4()), "name": None, "emails": None, "linkedinLink": None,
              "phones": {"primaryPhoneNumber": "", "primaryPhoneCallingCode": "+1"}}
    canonical = to_canonical(PEOPLE, record)
    assert {k: v for k, v in canonical.items() if k != "id"} == dict.fromkeys(PEOPLE.field_names)


@pytest.mark.parametrize(
    ("micros", "units"),
    [(12_500_500_000, "12500.5"), ("12500500000", "12500.5"), (1, "0.000001"), (0, "0"), (-2_000_000, "-2")],
)
def test_currency_micros_are_exact_units(micros: int | str, units: str) -> None:
    record = {"id": str(uuid.uuid4()), "amount": {"amountMicros": micros, "currencyCode": "USD"}}
    canonical = to_canonical(OPPORTUNITIES, record)
    assert (canonical["amount"], canonical["currency_code"]) == (units, "USD")
    payload = to_twenty(OPPORTUNITIES, {"amount": units, "currency_code": "USD"}, same_ids)
    assert payload["amount"] == {"amountMicros": int(micros), "currencyCode": "USD"}


def test_an_amount_finer_than_micros_is_refused_not_rounded() -> None:
    with pytest.raises(MappingError, match="finer than the micros"):
        to_twenty(COMPANIES, {"annual_recurring_revenue": "0.0000001"}, same_ids)


def test_ids_are_translated_and_unknown_references_left_out() -> None:
    company, person, own = (str(uuid.uuid4()) for _ in range(3))
    twenty_ids = {("companies", company): "11111111-1111-4111-8111-111111111111"}

    def translate(entity_name: str, canonical_id: str) -> str | None:
        return twenty_ids.get((entity_name, canonical_id))

    payload = to_twenty(
        OPPORTUNITIES,
        {"id": own, "name": "Deal", "stage": "NEW", "company_id": company, "point_of_contact_id": person},
        translate,
    )
    assert payload["id"] == own  # not in Twenty yet: created under its canonical id
    assert payload["companyId"] == "11111111-1111-4111-8111-111111111111"
    assert "pointOfContactId" not in payload  # Twenty would reject it, and null would unlink
    assert to_twenty(OPPORTUNITIES, {"company_id": None}, translate) == {"companyId": None}


def test_only_present_columns_are_sent_and_required_nulls_left_to_defaults() -> None:
    assert to_twenty(PEOPLE, {"job_title": "CEO"}, same_ids) == {"jobTitle": "CEO"}
    assert to_twenty(PEOPLE, {"first_name": "Ada"}, same_ids) == {"name": {"firstName": "Ada"}}
    assert to_twenty(OPPORTUNITIES, {"stage": None, "name": None}, same_ids) == {"name": None}
    assert to_twenty(COMPANIES, {"ideal_customer_profile": None}, same_ids) == {}


def test_phone_keeps_its_calling_code() -> None:
    payload = to_twenty(PEOPLE, {"phone": "+33 612345678"}, same_ids)
    assert payload["phones"] == {"primaryPhoneNumber": "612345678", "primaryPhoneCallingCode": "+33"}
    assert to_twenty(PEOPLE, {"phone": "0612345678"}, same_ids)["phones"]["primaryPhoneCallingCode"] is None


# --- through the stand-in -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twenty() -> Iterator[TwentyClient]:
    with run_standin(rate_limit_per_minute=100_000, rate_limit_per_second=10_000) as server:
        with TwentyClient(server.base_url, server.api_key, requests_per_minute=60_000) as client:
            yield client


def _stored_round_trip(client: TwentyClient, e: Entity, record: dict[str, Any]) -> dict[str, Any]:
    stored = client.create(twenty_object(e), to_twenty(e, record, same_ids), upsert=True)
    fetched = client.get(twenty_object(e), stored["id"])
    return {"id": fetched["id"], **canonical_record(e, to_canonical(e, fetched))}


def test_records_come_back_from_twenty_unchanged(twenty: TwentyClient) -> None:
    """Values already in Twenty's normal form (ms timestamps, normalised links) survive a real write."""
    tag = uuid.uuid4().hex[:8]
    company = {
        "id": str(uuid.uuid4()), "name": f"Acme {tag}", "domain_name": f"https://acme-{tag}.com",
        "employees": 120, "linkedin_url": f"https://www.linkedin.com/company/acme-{tag}",
        "annual_recurring_revenue": "12500.5", "currency_code": "EUR", "address_street": "1 Rue de Rivoli",
        "address_city": "Paris", "address_postcode": "75001", "address_country": "France",
        "ideal_customer_profile": True,
    }
    person = {
        "id": str(uuid.uuid4()), "first_name": "Ada", "last_name": "Lovelace",
        "email": f"ada.{tag}@example.com",
        "phone": "+44 2079460000", "job_title": "CTO", "city": "London",
        "linkedin_url": f"https://www.linkedin.com/in/ada-{tag}", "company_id": company["id"],
    }
    opportunity = {
        "id": str(uuid.uuid4()), "name": f"Deal {tag}", "amount": "99999.999999", "currency_code": "USD",
        "close_date": "2025-12-31T00:00:00.123000Z", "stage": "PROPOSAL", "company_id": company["id"],
        "point_of_contact_id": person["id"],
    }
    for e, record in ((COMPANIES, company), (PEOPLE, person), (OPPORTUNITIES, opportunity)):
        assert _stored_round_trip(twenty, e, canonical_record(e, record) | {"id": record["id"]}) == record


def test_an_update_keeps_sub_fields_the_canonical_model_lacks(twenty: TwentyClient) -> None:
    tag = uuid.uuid4().hex[:8]
    stored = twenty.create(
        "people",
        {
            "emails": {"primaryEmail": f"bob.{tag}@example.com", "additionalEmails": [f"b.{tag}@home.io"]},
            "phones": {"primaryPhoneNumber": "612345678", "primaryPhoneCallingCode": "+33"},
        },
    )
    canonical = to_canonical(PEOPLE, stored) | {"first_name": "Bob", "phone": "+33 700000000"}
    updated = twenty.create("people", to_twenty(PEOPLE, canonical, same_ids), upsert=True)
    assert updated["id"] == stored["id"]
    assert updated["emails"]["additionalEmails"] == [f"b.{tag}@home.io"]
    assert to_canonical(PEOPLE, updated)["phone"] == "+33 700000000"


def test_decimal_amounts_survive_float_free(twenty: TwentyClient) -> None:
    amount = format_decimal(Decimal("123456789.123456"))
    record = {
        "id": str(uuid.uuid4()), "name": "Big deal", "amount": amount, "currency_code": "EUR", "stage": "NEW"
    }
    assert _stored_round_trip(twenty, OPPORTUNITIES, record)["amount"] == amount
