"""Mapping between Twenty records (§7 of docs/twenty-api.md) and the registry's flat canonical fields.

The sync configuration (`stores.twenty` of the file `SYNC_PIPELINE_CONFIG` names) says which Twenty field
or composite sub-field holds each canonical field, as a dotted path: `jobTitle`, a custom `tier`,
`name.firstName`, `emails.primaryEmail`, `amount.amountMicros` (in micros, converted exactly to units);
fields it leaves out are neither read nor written. `to_canonical` reads a Twenty record into canonical
column names (values not yet validated; `model.canonical.canonical_record` normalises them), and
`to_twenty` builds a create/update payload.
Records created elsewhere are matched to existing Twenty records by Twenty's own upsert (§5.3).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Protocol

from sync_pipeline.config import SyncConfig, TwentyObjectMapping, active_config
from sync_pipeline.model.canonical import format_decimal
from sync_pipeline.model.entities import Entity, FieldType

TranslateId = Callable[[str, str], str | None]
"""(entity name, canonical id) -> the record's id in Twenty, or None when Twenty has no such record."""

_MICROS_EXPONENT = 6  # CURRENCY amounts are stored as amount x 1,000,000 (§7.1)
# Canonical phone = "<calling code> <number>" when Twenty has a calling code, else the number alone.
_PHONE_WITH_CALLING_CODE = re.compile(r"^(\+\d{1,4}) (\S.*)$", re.DOTALL)
_CALLING_CODE = "primaryPhoneCallingCode"
# Twenty's BOOLEAN and SELECT fields have defaults and reject an explicit null (§7.5): None is left out.
_NOT_NULLABLE = frozenset({FieldType.BOOLEAN, FieldType.ENUM})


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
    numeric: bool = False  # a canonical decimal string, sent as the JSON number a NUMBER field takes

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def to_canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        return {self.column: _blank_to_none(record.get(self.twenty))}

    def to_twenty(self, data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
        if self.column not in data or (data[self.column] is None and not self.nullable):
            return {}
        value = data[self.column]
        return {self.twenty: _to_number(self.column, value) if self.numeric and value is not None else value}


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
class _SubField:
    """One sub-field of a composite holding one canonical column, as it is (names, e-mails, links)."""

    name: str
    column: str

    def read(self, composite: dict[str, Any]) -> Any:
        return _blank_to_none(composite.get(self.name))

    def write(self, value: Any) -> dict[str, Any]:
        return {self.name: value}


@dataclass(frozen=True)
class _Micros(_SubField):
    """A CURRENCY composite's `amountMicros` <-> an amount in units, exactly (§7.1)."""

    def read(self, composite: dict[str, Any]) -> Any:
        micros = _blank_to_none(composite.get(self.name))
        # REST sends a number, GraphQL a BigFloat string (§7.1); str() keeps either exact.
        return None if micros is None else format_decimal(Decimal(str(micros)).scaleb(-_MICROS_EXPONENT))

    def write(self, value: Any) -> dict[str, Any]:
        return {self.name: _to_micros(self.column, value)}


@dataclass(frozen=True)
class _PhoneNumber(_SubField):
    """A PHONES composite's primary number with its calling code as one text column (when the calling
    code is not mapped to a column of its own)."""

    def read(self, composite: dict[str, Any]) -> Any:
        number = _blank_to_none(composite.get(self.name))
        calling_code = _blank_to_none(composite.get(_CALLING_CODE))
        # Twenty often keeps a default calling code next to an empty number: that is no phone.
        if number is None:
            return None
        return f"{calling_code} {number}" if calling_code else number

    def write(self, value: Any) -> dict[str, Any]:
        match = _PHONE_WITH_CALLING_CODE.match(value) if value is not None else None
        calling_code, number = match.groups() if match else (None, value)
        return {self.name: number, _CALLING_CODE: calling_code}


@dataclass(frozen=True)
class _Composite:
    """Sub-fields of one composite field (FULL_NAME, EMAILS, LINKS, ADDRESS, CURRENCY, PHONES).

    Only the sub-fields we own are sent: Twenty merges a partial composite into the stored one, so
    sub-fields the configuration leaves out (additional e-mails, secondary links) are kept.
    """

    twenty: str
    subfields: tuple[_SubField, ...]

    def columns(self) -> tuple[str, ...]:
        return tuple(sub.column for sub in self.subfields)

    def to_canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        composite = record.get(self.twenty) or {}
        return {sub.column: sub.read(composite) for sub in self.subfields}

    def to_twenty(self, data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for sub in self.subfields:
            if sub.column in data:
                values.update(sub.write(data[sub.column]))
        return {self.twenty: values} if values else {}


@dataclass(frozen=True)
class ObjectMapping:
    """How Twenty holds one entity: its object and the configured fields, nothing else."""

    entity: Entity
    object: str
    field_maps: tuple[_FieldMap, ...]

    def columns(self) -> list[str]:
        return [column for field_map in self.field_maps for column in field_map.columns()]

    def to_canonical(self, twenty_record: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {"id": twenty_record.get("id")}
        for field_map in self.field_maps:
            data.update(field_map.to_canonical(twenty_record))
        return data

    def to_twenty(self, canonical_data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if (canonical_id := canonical_data.get("id")) is not None:
            payload["id"] = translate_id(self.entity.name, canonical_id) or canonical_id
        for field_map in self.field_maps:
            payload.update(field_map.to_twenty(canonical_data, translate_id))
        return payload


def build_mapping(entity: Entity, spec: TwentyObjectMapping) -> ObjectMapping:
    """The mapping the configuration declares: a dotted path is a composite's sub-field (grouped by
    composite, in the order first named), a plain name a top-level field (standard or custom)."""
    by_top: dict[str, list[tuple[str, str]]] = {}
    for column, path in spec.fields.items():
        top, _, sub = path.partition(".")
        by_top.setdefault(top, []).append((sub, column))
    field_maps: list[_FieldMap] = []
    for top, parts in by_top.items():
        if parts[0][0]:
            subs = {sub for sub, _ in parts}
            field_maps.append(_Composite(top, tuple(_subfield(sub, column, subs) for sub, column in parts)))
            continue
        ((_, column),) = parts  # the configuration's checks allow one column per top-level field
        f = entity.field(column)
        if f.references:
            field_maps.append(_Reference(top, column, f.references))
        else:
            field_maps.append(_Scalar(top, column, nullable=f.type not in _NOT_NULLABLE,
                                      numeric=f.type is FieldType.NUMERIC))
    return ObjectMapping(entity, spec.object, tuple(field_maps))


def _subfield(name: str, column: str, siblings: set[str]) -> _SubField:
    if name == "amountMicros":
        return _Micros(name, column)
    if name == "primaryPhoneNumber" and _CALLING_CODE not in siblings:
        return _PhoneNumber(name, column)
    return _SubField(name, column)


def object_mapping(entity: Entity, config: SyncConfig | None = None) -> ObjectMapping:
    """An entity's mapping in a configuration (the active one by default, built once); KeyError when
    Twenty does not carry the entity."""
    return _active_mapping(entity) if config is None else _mapping_in(config, entity)


@cache
def _active_mapping(entity: Entity) -> ObjectMapping:
    return _mapping_in(active_config(), entity)


def _mapping_in(config: SyncConfig, entity: Entity) -> ObjectMapping:
    spec = config.twenty_mapping(entity.name)
    if spec is None:
        raise KeyError(f"Twenty does not carry {entity.name!r} (see the sync configuration's stores.twenty)")
    return build_mapping(entity, spec)


def carries(entity: Entity, config: SyncConfig | None = None) -> bool:
    return (config or active_config()).twenty_mapping(entity.name) is not None


def twenty_object(entity: Entity) -> str:
    """Twenty's plural object name for an entity."""
    return object_mapping(entity).object


def mapped_columns(entity: Entity) -> list[str]:
    """Canonical columns the mapping covers, in mapping order (tests compare it with the registry)."""
    return object_mapping(entity).columns()


def to_canonical(entity: Entity, twenty_record: dict[str, Any]) -> dict[str, Any]:
    """A Twenty record as its carried canonical columns plus `id` (Twenty's id); values not yet validated."""
    return object_mapping(entity).to_canonical(twenty_record)


def to_twenty(entity: Entity, canonical_data: dict[str, Any], translate_id: TranslateId) -> dict[str, Any]:
    """A create/update payload holding the carried columns present in `canonical_data`.

    Ids go through `translate_id(entity_name, canonical_id)`. The record's own id is sent as its
    Twenty id when known, else as the canonical id: a new record then gets the canonical id in
    Twenty, which makes a replayed upsert match the same row (§5.3).
    """
    return object_mapping(entity).to_twenty(canonical_data, translate_id)


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


def _to_number(column: str, value: Any) -> int | float:
    """A decimal as a JSON number, refused when a double cannot hold it exactly."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MappingError(f"{column}: not a number: {value!r}") from None
    if number.is_finite() and number == number.to_integral_value():
        return int(number)
    as_float = float(number)
    if not number.is_finite() or Decimal(repr(as_float)) != number:
        raise MappingError(f"{column}: {value} has no exact representation in a Twenty NUMBER field")
    return as_float
