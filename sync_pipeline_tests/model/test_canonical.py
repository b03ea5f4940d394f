"""Canonical values: one normal form per field type, idempotent, and a content hash that ignores key order."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_pipeline.model.canonical import (
    DELETED_HASH,
    CanonicalValueError,
    canonical_record,
    canonical_value,
    content_hash,
    python_value,
)
from sync_pipeline.model.entities import FieldType, entity

STAGES = entity("opportunities").field("stage").choices


@pytest.mark.parametrize(("ftype", "raw", "expected"), [
    (FieldType.TEXT, "Ada", "Ada"),
    (FieldType.TEXT, 42, "42"),
    (FieldType.TEXT, " keeps inner and outer spaces ", " keeps inner and outer spaces "),
    (FieldType.EMAIL, "  Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
    (FieldType.URL, "HTTPS://Example.COM/Team/", "https://example.com/Team"),
    (FieldType.URL, "  LinkedIn.com/in/Ada//", "linkedin.com/in/Ada"),
    (FieldType.URL, "https://example.com", "https://example.com"),
    (FieldType.URL, "/", None),
    (FieldType.UUID, "6F1C2A52-0B8E-4D8E-9A51-3C1F7A0E2B11", "6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11"),
    (FieldType.UUID, "6f1c2a520b8e4d8e9a513c1f7a0e2b11", "6f1c2a52-0b8e-4d8e-9a51-3c1f7a0e2b11"),
    (FieldType.UUID, uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (FieldType.INTEGER, "42", 42),
    (FieldType.INTEGER, 7.0, 7),
    (FieldType.INTEGER, Decimal("1E+3"), 1000),
    (FieldType.INTEGER, " -3 ", -3),
    (FieldType.NUMERIC, "1.500", "1.5"),
    (FieldType.NUMERIC, Decimal("1E+3"), "1000"),
    (FieldType.NUMERIC, 0.1, "0.1"),
    (FieldType.NUMERIC, "-0.00", "0"),
    (FieldType.NUMERIC, 12, "12"),
    (FieldType.NUMERIC, "-1234567.890", "-1234567.89"),
    (FieldType.NUMERIC, "0.000001", "0.000001"),
    (FieldType.BOOLEAN, True, True),
    (FieldType.BOOLEAN, "Yes", True),
    (FieldType.BOOLEAN, "f", False),
    (FieldType.BOOLEAN, 0, False),
    (FieldType.TIMESTAMP, "2024-03-01T12:34:56.789999+02:00", "2024-03-01T10:34:56.789000Z"),
    (FieldType.TIMESTAMP, "2024-03-01T00:30:00-05:30", "2024-03-01T06:00:00.000000Z"),
    (FieldType.TIMESTAMP, "2024-03-01T12:00:00Z", "2024-03-01T12:00:00.000000Z"),
    (FieldType.TIMESTAMP, "2024-03-01 12:00:00", "2024-03-01T12:00:00.000000Z"),  # naive is UTC
    (FieldType.TIMESTAMP, datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-1))),
     "2024-03-01T13:00:00.123000Z"),
    (FieldType.TIMESTAMP, date(2024, 3, 1), "2024-03-01T00:00:00.000000Z"),
    (FieldType.TIMESTAMP, "0999-12-31T23:59:59+00:00", "0999-12-31T23:59:59.000000Z"),
    (FieldType.ENUM, " meeting ", "MEETING"),
])
def test_canonical_form_per_type(ftype: FieldType, raw: Any, expected: Any) -> None:
    assert canonical_value(ftype, raw, STAGES if ftype is FieldType.ENUM else ()) == expected


@pytest.mark.parametrize("ftype", list(FieldType))
@pytest.mark.parametrize("missing", [None, "", "   ", float("nan")])
def test_missing_and_blank_values_are_none(ftype: FieldType, missing: Any) -> None:
    assert canonical_value(ftype, missing, STAGES) is None


@pytest.mark.parametrize(("ftype", "raw", "message"), [
    (FieldType.EMAIL, "ada.example.com", "malformed e-mail address: 'ada.example.com'"),
    (FieldType.EMAIL, "ada@example", "malformed e-mail address: 'ada@example'"),
    (FieldType.EMAIL, "a da@example.com", "malformed e-mail address: 'a da@example.com'"),
    (FieldType.UUID, "not-a-uuid", "not a UUID: 'not-a-uuid'"),
    (FieldType.INTEGER, "1.5", "not a whole number: '1.5'"),
    (FieldType.INTEGER, "many", "not a number: 'many'"),
    (FieldType.INTEGER, True, "not a number: True"),
    (FieldType.NUMERIC, "NaN", "not a finite number: 'NaN'"),
    (FieldType.NUMERIC, "Infinity", "not a finite number: 'Infinity'"),
    (FieldType.NUMERIC, "1,5", "not a number: '1,5'"),
    (FieldType.BOOLEAN, "maybe", "not a boolean: 'maybe'"),
    (FieldType.BOOLEAN, 2, "not a boolean: 2"),
    (FieldType.TIMESTAMP, "yesterday", "not an ISO-8601 timestamp: 'yesterday'"),
    (FieldType.TIMESTAMP, 1700000000, "not a timestamp: 1700000000"),
    (FieldType.ENUM, "won", "'won' is not one of NEW, SCREENING, MEETING, PROPOSAL, CUSTOMER"),
])
def test_invalid_values_raise_a_readable_reason(ftype: FieldType, raw: Any, message: str) -> None:
    with pytest.raises(CanonicalValueError) as info:
        canonical_value(ftype, raw, STAGES)
    assert str(info.value) == message


def test_a_malformed_link_raises_a_canonical_value_error() -> None:
    """urlsplit's own ValueError must not escape: callers catch CanonicalValueError only."""
    with pytest.raises(CanonicalValueError):
        canonical_value(FieldType.URL, "http://[example.com")


def test_canonical_record_names_the_bad_field_and_ignores_unknown_keys() -> None:
    people = entity("people")
    record = canonical_record(people, {"first_name": "Ada", "email": "ADA@Example.com", "nickname": "A"})
    assert record == {"first_name": "Ada", "last_name": None, "email": "ada@example.com", "phone": None,
                      "job_title": None, "city": None, "linkedin_url": None, "company_id": None}
    with pytest.raises(CanonicalValueError, match=r"^email: malformed e-mail address: 'nope'$"):
        canonical_record(people, {"first_name": "Ada", "email": "nope"})


@pytest.mark.parametrize(("ftype", "canonical", "expected"), [
    (FieldType.NUMERIC, "1.5", Decimal("1.5")),
    (FieldType.TIMESTAMP, "2024-03-01T10:34:56.789000Z", datetime(2024, 3, 1, 10, 34, 56, 789000, timezone.utc)),
    (FieldType.UUID, "00000000-0000-0000-0000-000000000001", uuid.UUID(int=1)),
    (FieldType.TEXT, "Ada", "Ada"),
    (FieldType.INTEGER, 3, 3),
    (FieldType.BOOLEAN, None, None),
])
def test_python_value_for_drivers(ftype: FieldType, canonical: Any, expected: Any) -> None:
    assert python_value(ftype, canonical) == expected


# --- content hash -------------------------------------------------------------------------------------

def test_content_hash_is_the_sha256_of_sorted_compact_json() -> None:
    data = {"b": "x", "a": 1, "c": None}
    assert content_hash(data) == hashlib.sha256(b'{"a":1,"b":"x","c":null}').hexdigest()


def test_content_hash_of_a_tombstone_is_the_deleted_marker() -> None:
    assert content_hash(None) == DELETED_HASH == "deleted"


def test_content_hash_tells_values_apart() -> None:
    assert content_hash({"a": "1"}) != content_hash({"a": 1})
    assert content_hash({"a": None}) != content_hash({})


json_values = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()


@given(st.dictionaries(st.text(), json_values))
def test_content_hash_is_key_order_independent_and_stable(data: dict[str, Any]) -> None:
    reordered = dict(reversed(list(data.items())))
    assert content_hash(reordered) == content_hash(data) == content_hash(dict(data))
    assert len(content_hash(data)) == 64


# --- idempotence ----------------------------------------------------------------------------------

RAW_VALUES: dict[FieldType, st.SearchStrategy[Any]] = {
    FieldType.TEXT: st.text(),
    FieldType.URL: st.text() | st.text(alphabet="aB.:/ ", max_size=8),
    FieldType.EMAIL: st.emails() | st.emails().map(str.upper).map(lambda e: f"  {e} "),
    FieldType.UUID: st.uuids() | st.uuids().map(str).map(str.upper),
    FieldType.INTEGER: st.integers() | st.integers().map(str),
    FieldType.NUMERIC: st.decimals(allow_nan=False, allow_infinity=False, places=6) | st.integers(),
    FieldType.BOOLEAN: st.booleans() | st.sampled_from(["true", "F", "yes", "0"]),
    FieldType.TIMESTAMP: st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    FieldType.ENUM: st.sampled_from(STAGES).map(str.lower),
}


@pytest.mark.parametrize("ftype", list(FieldType))
@given(data=st.data())
def test_canonicalising_a_canonical_value_changes_nothing(ftype: FieldType, data: st.DataObject) -> None:
    try:
        once = canonical_value(ftype, data.draw(RAW_VALUES[ftype], label=ftype.value), STAGES)
    except CanonicalValueError:
        return
    assert canonical_value(ftype, once, STAGES) == once


@pytest.mark.parametrize("raw", ["example.com /", "https://example.com/ /"])
def test_a_link_ending_in_a_blank_before_its_slash_is_a_fixed_point(raw: str) -> None:
    once = canonical_value(FieldType.URL, raw)
    assert canonical_value(FieldType.URL, once) == once
