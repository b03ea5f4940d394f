"""Canonical values: one normal form per field type, so that every store's copy of a record hashes alike.

Values are JSON-safe (the hub keeps them as jsonb): uuids and e-mails lower-case, numerics as plain
decimal strings, timestamps as UTC ISO-8601 with microseconds, empty strings as null.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Collection
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from sync_pipeline.model.entities import Entity, FieldType

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NUL_REASON = "contains a NUL character, which Postgres cannot store"
# Dates Postgres holds and Python cannot (year 10000 and later, BC), as a store gives them in text.
_BEYOND_PYTHON_DATES = re.compile(r"^\s*[+-]?\d{5,}-|\bBC\s*$")
_TRAILING_SLASHES = re.compile(r"[/\s]+$")
DELETED_HASH = "deleted"


class CanonicalValueError(ValueError):
    """A value cannot be put in its field's canonical form."""


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def normalise_link(url: str) -> str:
    """Twenty's link normal form (docs/twenty-api.md §7.5): lower-cased scheme and host, no trailing `/`.
    Canonical links take it too, so a link coming back from Twenty is not a change."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
        raise CanonicalValueError(f"not a link: {url!r} ({exc})") from None
    if parts.scheme and parts.netloc:
        url = urlunsplit(parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()))
    else:
        host, slash, rest = url.partition("/")
        url = host.lower() + slash + rest
    return _TRAILING_SLASHES.sub("", url)


def parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, date):
        ts = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            if _BEYOND_PYTHON_DATES.search(value):
                raise CanonicalValueError(f"{value!r} is outside the years 1 to 9999 the sync can hold") from None
            raise CanonicalValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    else:
        raise CanonicalValueError(f"not a timestamp: {value!r}")
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def format_decimal(value: Decimal) -> str:
    with localcontext() as exact:
        exact.prec = 80  # normalize() rounds to the context's precision: keep every digit
        text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise CanonicalValueError(f"not a number: {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise CanonicalValueError(f"not a number: {value!r}") from None
    if not number.is_finite():
        raise CanonicalValueError(f"not a finite number: {value!r}")
    return number


def canonical_value(ftype: FieldType, value: Any, choices: tuple[str, ...] = ()) -> Any:
    """The canonical form of one value; raises CanonicalValueError with a readable reason."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas means missing
        return None
    if isinstance(value, str) and "\x00" in value:
        raise CanonicalValueError(NUL_REASON)
    match ftype:
        case FieldType.TEXT:
            return str(value)
        case FieldType.URL:
            return normalise_link(str(value).strip()) or None
        case FieldType.EMAIL:
            email = str(value).strip().lower()
            if not EMAIL_PATTERN.match(email):
                raise CanonicalValueError(f"malformed e-mail address: {value!r}")
            return email
        case FieldType.UUID:
            try:
                return str(uuid.UUID(str(value)))
            except ValueError:
                raise CanonicalValueError(f"not a UUID: {value!r}") from None
        case FieldType.INTEGER:
            number = _to_decimal(value)
            if number != number.to_integral_value():
                raise CanonicalValueError(f"not a whole number: {value!r}")
            return int(number)
        case FieldType.NUMERIC:
            return format_decimal(_to_decimal(value))
        case FieldType.BOOLEAN:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "t", "1", "yes"):
                return True
            if text in ("false", "f", "0", "no"):
                return False
            raise CanonicalValueError(f"not a boolean: {value!r}")
        case FieldType.TIMESTAMP:
            ts = parse_timestamp(value)
            try:
                # Milliseconds, Twenty's precision (docs/twenty-api.md §10.3), so a round trip is no change.
                return format_timestamp(ts.replace(microsecond=ts.microsecond // 1000 * 1000))
            except OverflowError:  # e.g. 9999-12-31 23:00-05, year 10000 in UTC
                raise CanonicalValueError(f"{value!r} is outside the years 1 to 9999 the sync can hold") from None
        case FieldType.ENUM:
            text = str(value).strip().upper()
            if choices and text not in choices:
                raise CanonicalValueError(f"{value!r} is not one of {', '.join(choices)}")
            return text
    raise AssertionError(f"unhandled field type {ftype}")


def canonical_record(entity: Entity, raw: dict[str, Any], fields: Collection[str] | None = None
                     ) -> dict[str, Any]:
    """The canonical form of a record's fields (without its id); raises on the first bad value.

    `fields`: only these (those a store carries), in the entity's order; every field by default."""
    out: dict[str, Any] = {}
    for f in entity.fields if fields is None else [f for f in entity.fields if f.name in fields]:
        try:
            out[f.name] = canonical_value(f.type, raw.get(f.name), f.choices)
        except CanonicalValueError as exc:
            raise CanonicalValueError(f"{f.name}: {exc}") from None
    return out


def content_hash(data: dict[str, Any] | None) -> str:
    """A stable hash of canonical field values; a tombstone hashes to a fixed marker."""
    if data is None:
        return DELETED_HASH
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def python_value(ftype: FieldType, value: Any) -> Any:
    """A canonical JSON value as the Python type a database driver expects."""
    if value is None:
        return None
    match ftype:
        case FieldType.NUMERIC:
            return Decimal(value)
        case FieldType.TIMESTAMP:
            return parse_timestamp(value)
        case FieldType.UUID:
            return uuid.UUID(value)
    return value
