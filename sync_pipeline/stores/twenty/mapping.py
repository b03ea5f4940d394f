"""Mapping between Twenty records (§7 of docs/twenty-api.md) and the registry's flat canonical fields.

One declarative table per entity says which Twenty field or composite sub-field holds each canonical
column. `to_canonical` reads a Twenty record into canonical column names (values not yet validated;
`model.canonical.canonical_record` normalises them), and `to_twenty` builds a create/update payload.
Records created elsewhere are matched to existing Twenty records by Twenty's own upsert (§5.3).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sync_pipeline.model.canonical import format_decimal
from sync_pipeline.model.entities import Entity

TranslateId = Callable[[str, str], str | None]
"""(entity name, canonical id) -> the record's id in Twenty, or None when Twenty has no such record."""

_MICROS_EXPONENT = 6  # CURRENCY amounts are stored as amount x 1,000,000 (§7.1)
# Canonical phone = "<calling code> <number>" when Twenty has a calling code, else the number alone.
_PHONE_WITH_CALLING_CODE = re.compile(r"^(\+\d{1,4}) (\S.*)$", re.DOTALL)


class MappingError(ValueError):
    """A canonical value has no exact Twenty representation."""


def _blank_to_none(value: Any) -> Any:
    """§7.1: `""` and null are the same empty value."""
    return None if value == "" else value


class _FieldMap(Protocol):
    def columns(self) -> tuple[str, ...]: ...

    def to_canonical(self, record: dict[str, Any]) -> dict[str, Any]: ...

    def to_twenty(self, data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _Scalar:
    """A top-level Twenty field holding one canonical column."""

    twenty: str
    column: str
    nullable: bool = True  # False: Twenty rejects an explicit null (§7.5), so None is left out

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def to_canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        return {self.column: _blank_to_none(record.get(self.twenty))}

    def to_twenty(self, data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
        if self.column not in data or (data[self.column] is None and not self.nullable):
            return {}
        return {self.twenty: data[self.column]}


@dataclass(frozen=True)
class _Reference:
    """A join column (`companyId`) holding the Twenty id of a record of entity `target`."""

    twenty: str
    column: str
    target: str

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def to_canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        return {self.column: _blank_to_none(record.get(self.twenty))}

    def to_twenty(self, data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
        if self.column not in data:
            return {}
        canonical_id = data[self.column]
        if canonical_id is None:
            return {self.twenty: None}  # the link was removed: disconnect
        twenty_id = translate_id(self.target, canonical_id)
        # A target Twenty does not hold yet is left out rather than sent: Twenty would reject the
        # foreign key, and null would wipe a link; the next publish, after the target's, sets it.
        return {} if twenty_id is None else {self.twenty: twenty_id}


@dataclass(frozen=True)
class _Composite:
    """Sub-fields of one composite field (FULL_NAME, EMAILS, LINKS, ADDRESS), one column each.

    Only the sub-fields we own are sent: Twenty merges a partial composite into the stored one, so
    sub-fields the canonical model lacks (additional e-mails, secondary links) are kept.
    """

    twenty: str
    subfields: tuple[tuple[str, str], ...]  # (sub-field, column)

    def columns(self) -> tuple[str, ...]:
        return tuple(column for _, column in self.subfields)

    def to_canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        composite = record.get(self.twenty) or {}
        return {column: _blank_to_none(composite.get(sub)) for sub, column in self.subfields}

    def to_twenty(self, data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
        values = {sub: data[column] for sub, column in self.subfields if column in data}
        return {self.twenty: values} if values else {}



@dataclass(frozen=True)
class _Currency:
    """A CURRENCY composite: `amountMicros` <-> an amount in units (exact), `currencyCode` <-> code."""

    twenty: str
    amount_column: str
    code_column: str

    def columns(self) -> tuple[str, ...]:
        return (self.amount_column, self.code_column)

    def to_canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        composite = record.get(self.twenty) or {}
        micros = _blank_to_none(composite.get("amountMicros"))
        # REST sends a number, GraphQL a BigFloat string (§7.1); str() keeps either exact.
        amount = None if micros is None else Decimal(str(micros)).scaleb(-_MICROS_EXPONENT)
        return {
            self.amount_column: None if amount is None else format_decimal(amount),
            self.code_column: _blank_to_none(composite.get("currencyCode")),
        }

    def to_twenty(self, data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.amount_column in data:
            values["amountMicros"] = _to_micros(self.amount_column, data[self.amount_column])
        if self.code_column in data:
            values["currencyCode"] = data[self.code_column]
        return {self.twenty: values} if values else {}


@dataclass(frozen=True)
class _Phone:
    """The primary number of a PHONES composite, with its calling code, as one text column."""

    twenty: str
    column: str

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def to_canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        phones = record.get(self.twenty) or {}
        number = _blank_to_none(phones.get("primaryPhoneNumber"))
        calling_code = _blank_to_none(phones.get("primaryPhoneCallingCode"))
        # Twenty often keeps a default calling code next to an empty number: that is no phone.
        if number is None:
            return {self.column: None}
        return {self.column: f"{calling_code} {number}" if calling_code else number}

    def to_twenty(self, data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
        if self.column not in data:
            return {}
        phone = data[self.column]
        match = _PHONE_WITH_CALLING_CODE.match(phone) if phone is not None else None
        calling_code, number = match.groups() if match else (None, phone)
        return {self.twenty: {"primaryPhoneNumber": number, "primaryPhoneCallingCode": calling_code}}


_FIELD_MAPS: dict[str, tuple[_FieldMap, ...]] = {
    "companies": (
        _Scalar("name", "name"),
        _Composite("domainName", (("primaryLinkUrl", "domain_name"),)),
        _Scalar("employees", "employees"),
        _Composite("linkedinLink", (("primaryLinkUrl", "linkedin_url"),)),
        _Currency("annualRecurringRevenue", "annual_recurring_revenue", "currency_code"),
        _Composite(
            "address",
            (
                ("addressStreet1", "address_street"),
                ("addressCity", "address_city"),
                ("addressPostcode", "address_postcode"),
                ("addressCountry", "address_country"),
            ),
        ),
        _Scalar("idealCustomerProfile", "ideal_customer_profile", nullable=False),
    ),
    "people": (
        _Composite("name", (("firstName", "first_name"), ("lastName", "last_name"))),
        _Composite("emails", (("primaryEmail", "email"),)),
        _Phone("phones", "phone"),
        _Scalar("jobTitle", "job_title"),
        _Scalar("city", "city"),
        _Composite("linkedinLink", (("primaryLinkUrl", "linkedin_url"),)),
        _Reference("companyId", "company_id", "companies"),
    ),
    "opportunities": (
        _Scalar("name", "name"),
        _Currency("amount", "amount", "currency_code"),
        _Scalar("closeDate", "close_date"),
        _Scalar("stage", "stage", nullable=False),
        _Reference("companyId", "company_id", "companies"),
        _Reference("pointOfContactId", "point_of_contact_id", "people"),
    ),
}


def _field_maps(entity: Entity) -> tuple[_FieldMap, ...]:
    try:
        return _FIELD_MAPS[entity.name]
    except KeyError:
        raise KeyError(f"no Twenty mapping for entity {entity.name!r}") from None


def mapped_columns(entity: Entity) -> list[str]:
    """Canonical columns the mapping covers, in mapping order (tests compare it with the registry)."""
    return [column for field_map in _field_maps(entity) for column in field_map.columns()]


def to_canonical(entity: Entity, twenty_record: dict[str, Any]) -> dict[str, Any]:
    """A Twenty record as canonical columns plus `id` (Twenty's id); values are not yet validated."""
    data: dict[str, Any] = {"id": twenty_record.get("id")}
    for field_map in _field_maps(entity):
        data.update(field_map.to_canonical(twenty_record))
    return data


def to_twenty(entity: Entity, canonical_data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
    """A create/update payload holding the columns present in `canonical_data`.

    Ids go through `translate_id(entity_name, canonical_id)`. The record's own id is sent as its
    Twenty id when known, else as the canonical id: a new record then gets the canonical id in
    Twenty, which makes a replayed upsert match the same row (§5.3).
    """
    payload: dict[str, Any] = {}
    if (canonical_id := canonical_data.get("id")) is not None:
        payload["id"] = translate_id(entity.name, canonical_id) or canonical_id
    for field_map in _field_maps(entity):
        payload.update(field_map.to_twenty(canonical_data, translate_id))
    return payload


def _to_micros(column: str, amount: Any) -> int | None:
    if amount is None:
        return None
    try:
        micros = Decimal(str(amount)).scaleb(_MICROS_EXPONENT)
    except InvalidOperation:
        raise MappingError(f"{column}: not a number: {amount!r}") from None
    if not micros.is_finite():
        raise MappingError(f"{column}: not a finite number: {amount!r}")
    if micros != micros.to_integral_value():
        raise MappingError(f"{column}: {amount} is finer than the micros Twenty stores")
    return int(micros)
