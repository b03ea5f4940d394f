"""Field definitions, input coercion and normalisation of people / companies / opportunities (§7).

Section numbers (§) refer to the Twenty API contract in docs/twenty-api.md.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import bad_request

# Scalar types
TEXT, NUMBER, BOOLEAN, UUID, DATE_TIME, SELECT = "TEXT", "NUMBER", "BOOLEAN", "UUID", "DATE_TIME", "SELECT"
ARRAY, RAW_JSON = "ARRAY", "RAW_JSON"  # only as composite sub-field types
# Composite types (§7.1)
FULL_NAME, EMAILS, PHONES, LINKS, CURRENCY, ADDRESS, ACTOR = (
    "FULL_NAME", "EMAILS", "PHONES", "LINKS", "CURRENCY", "ADDRESS", "ACTOR",
)

COMPOSITE_SUBFIELDS: dict[str, dict[str, str]] = {
    FULL_NAME: {"firstName": TEXT, "lastName": TEXT},
    EMAILS: {"primaryEmail": TEXT, "additionalEmails": ARRAY},
    PHONES: {
        "primaryPhoneNumber": TEXT,
        "primaryPhoneCountryCode": TEXT,
        "primaryPhoneCallingCode": TEXT,
        "additionalPhones": ARRAY,
    },
    LINKS: {"primaryLinkUrl": TEXT, "primaryLinkLabel": TEXT, "secondaryLinks": ARRAY},
    CURRENCY: {"amountMicros": NUMBER, "currencyCode": TEXT},
    ADDRESS: {
        "addressStreet1": TEXT,
        "addressStreet2": TEXT,
        "addressCity": TEXT,
        "addressState": TEXT,
        "addressPostcode": TEXT,
        "addressCountry": TEXT,
        "addressLat": NUMBER,
        "addressLng": NUMBER,
    },
    ACTOR: {"source": TEXT, "workspaceMemberId": UUID, "name": TEXT, "context": RAW_JSON},
}

ACTOR_SOURCES = (
    "EMAIL", "CALENDAR", "WORKFLOW", "AGENT", "API", "IMPORT", "MANUAL", "SYSTEM", "WEBHOOK", "APPLICATION",
)
OPPORTUNITY_STAGES = ("NEW", "SCREENING", "MEETING", "PROPOSAL", "CUSTOMER")
SERVER_MANAGED = ("createdBy", "updatedBy")


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    nullable: bool = True
    default: Any = None
    options: tuple[str, ...] = ()
    target: str | None = None  # plural of the referenced object, for join columns

    @property
    def is_composite(self) -> bool:
        return self.type in COMPOSITE_SUBFIELDS


@dataclass(frozen=True)
class ObjectDef:
    singular: str
    plural: str
    metadata_id: str
    fields: dict[str, FieldDef]
    unique_paths: tuple[str, ...] = ()
    many_to_one: dict[str, str] = field(default_factory=dict)  # relation name -> join column
    one_to_many: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (plural, join column)

    @property
    def singular_label(self) -> str:
        return self.singular[0].upper() + self.singular[1:]

    @property
    def plural_label(self) -> str:
        return self.plural[0].upper() + self.plural[1:]


def _fields(*defs: FieldDef) -> dict[str, FieldDef]:
    system = (
        FieldDef("id", UUID, nullable=False),
        FieldDef("position", NUMBER, default=0),
        FieldDef("createdBy", ACTOR),
        FieldDef("updatedBy", ACTOR),
        FieldDef("createdAt", DATE_TIME),
        FieldDef("updatedAt", DATE_TIME),
        FieldDef("deletedAt", DATE_TIME),
    )
    return {d.name: d for d in (system[0], *defs, *system[1:])}


OBJECTS: dict[str, ObjectDef] = {
    "people": ObjectDef(
        singular="person",
        plural="people",
        metadata_id="20202020-e674-48e5-a542-72570eee7213",
        fields=_fields(
            FieldDef("name", FULL_NAME),
            FieldDef("emails", EMAILS),
            FieldDef("linkedinLink", LINKS),
            FieldDef("xLink", LINKS),
            FieldDef("jobTitle", TEXT),
            FieldDef("phones", PHONES),
            FieldDef("city", TEXT),
            FieldDef("avatarUrl", TEXT),
            FieldDef("leadScore", NUMBER),  # a workspace's custom field (§7): the configuration tests map it
            FieldDef("companyId", UUID, target="companies"),
        ),
        unique_paths=("emails.primaryEmail",),
        many_to_one={"company": "companyId"},
        one_to_many={"pointOfContactForOpportunities": ("opportunities", "pointOfContactId")},
    ),
    "companies": ObjectDef(
        singular="company",
        plural="companies",
        metadata_id="20202020-b374-4779-a561-80086cb2e17f",
        fields=_fields(
            FieldDef("name", TEXT),
            FieldDef("domainName", LINKS),
            FieldDef("employees", NUMBER),
            FieldDef("linkedinLink", LINKS),
            FieldDef("xLink", LINKS),
            FieldDef("annualRecurringRevenue", CURRENCY),
            FieldDef("address", ADDRESS),
            FieldDef("idealCustomerProfile", BOOLEAN, nullable=False, default=False),
            FieldDef("accountOwnerId", UUID),  # workspace members are not modelled: any UUID is accepted
        ),
        unique_paths=("domainName.primaryLinkUrl",),
        one_to_many={"people": ("people", "companyId"), "opportunities": ("opportunities", "companyId")},
    ),
    "opportunities": ObjectDef(
        singular="opportunity",
        plural="opportunities",
        metadata_id="20202020-9549-49dd-b2b2-883999db8938",
        fields=_fields(
            FieldDef("name", TEXT),
            FieldDef("amount", CURRENCY),
            FieldDef("closeDate", DATE_TIME),
            FieldDef("stage", SELECT, nullable=False, default="NEW", options=OPPORTUNITY_STAGES),
            FieldDef("companyId", UUID, target="companies"),
            FieldDef("pointOfContactId", UUID, target="people"),
        ),
        many_to_one={"company": "companyId", "pointOfContact": "pointOfContactId"},
    ),
}
OBJECTS_BY_SINGULAR = {obj.singular: obj for obj in OBJECTS.values()}


# --- values ---------------------------------------------------------------------------------------


def format_timestamp(moment: dt.datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z`` (§10.3)."""
    utc = moment.astimezone(dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> dt.datetime:
    """Parse an ISO date or date-time (``Z``, offsets or naive = UTC); raises ValueError."""
    if not isinstance(text, str) or not text:
        raise ValueError(text)
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def normalise_url(url: str | None) -> str | None:
    """Lower-case the origin and drop the trailing ``/`` (§7.5, transform-links-value)."""
    if url is None or not url.strip():
        return None
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        origin = (parts.scheme.lower(), parts.netloc.lower())
        url = urlunsplit((*origin, parts.path, parts.query, parts.fragment))
    else:
        host, slash, rest = url.partition("/")
        url = host.lower() + slash + rest
    return url.rstrip("/") or None


def empty_composite(composite_type: str) -> dict[str, Any]:
    return {name: None for name in COMPOSITE_SUBFIELDS[composite_type]}


def get_path(record: dict[str, Any], path: str) -> Any:
    """Value at ``field`` or ``field.subField``; None when any level is missing."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def field_type_at(obj: ObjectDef, path: str) -> str | None:
    """Type of a top-level field or composite sub-field, None when unknown."""
    head, _, sub = path.partition(".")
    definition = obj.fields.get(head)
    if definition is None:
        return None
    if not sub:
        return definition.type
    if "." in sub or not definition.is_composite:
        return None
    return COMPOSITE_SUBFIELDS[definition.type].get(sub)


# --- input coercion ---------------------------------------------------------------------------------

RelationResolver = Callable[[str, dict[str, Any]], str]  # (target plural, where) -> id


def _invalid(field_name: str, value: Any, expected: str) -> Exception:
    return bad_request(f"Invalid value '{value}' for field \"{field_name}\": expected {expected}.")


def _coerce_scalar(field_name: str, scalar_type: str, value: Any, options: tuple[str, ...] = ()) -> Any:
    if value is None:
        return None
    if scalar_type == TEXT:
        if not isinstance(value, str):
            raise _invalid(field_name, value, "a string")
        return value if value != "" else None  # '' is a null-equivalent (§7.1)
    if scalar_type == NUMBER:
        if isinstance(value, str):  # GraphQL BigFloat style amounts arrive as strings
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise _invalid(field_name, value, "a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(field_name, value, "a number")
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if scalar_type == BOOLEAN:
        if not isinstance(value, bool):
            raise _invalid(field_name, value, "a boolean")
        return value
    if scalar_type == UUID:
        if value == "":
            return None
        if not is_uuid(value):
            raise bad_request(f"'{value}' is not a valid UUID")
        return value.lower()
    if scalar_type == DATE_TIME:
        if value == "":
            return None
        try:
            return format_timestamp(parse_timestamp(value))
        except (ValueError, TypeError):
            raise _invalid(field_name, value, "an ISO-8601 date-time") from None
    if scalar_type == SELECT:
        if value not in options:
            raise _invalid(field_name, value, "one of " + ", ".join(options))
        return value
    if scalar_type == ARRAY:
        if not isinstance(value, list):
            raise _invalid(field_name, value, "an array")
        return value
    if scalar_type == RAW_JSON:
        return value
    raise AssertionError(scalar_type)


def _coerce_composite(
    obj: ObjectDef, definition: FieldDef, value: Any, current: dict[str, Any] | None
) -> dict[str, Any]:
    subfields = COMPOSITE_SUBFIELDS[definition.type]
    merged = dict(current or empty_composite(definition.type))
    if value is None:
        return empty_composite(definition.type)
    if not isinstance(value, dict):
        raise _invalid(definition.name, value, "an object")
    for key, sub_value in value.items():
        if key not in subfields:
            raise bad_request(f"Object {obj.singular} doesn't have any \"{definition.name}.{key}\" field.")
        merged[key] = _coerce_scalar(f"{definition.name}.{key}", subfields[key], sub_value)
    if definition.type == EMAILS:
        if merged["primaryEmail"]:
            merged["primaryEmail"] = merged["primaryEmail"].strip().lower() or None
        if merged["additionalEmails"]:
            merged["additionalEmails"] = [str(email).strip().lower() for email in merged["additionalEmails"]]
    elif definition.type == LINKS:
        merged["primaryLinkUrl"] = normalise_url(merged["primaryLinkUrl"])
        if merged["secondaryLinks"]:
            merged["secondaryLinks"] = [
                {**link, "url": normalise_url(link.get("url"))} if isinstance(link, dict) else link
                for link in merged["secondaryLinks"]
            ]
    elif definition.type == ACTOR and merged["source"] is not None and merged["source"] not in ACTOR_SOURCES:
        raise _invalid(f"{definition.name}.source", merged["source"], "one of " + ", ".join(ACTOR_SOURCES))
    return merged


def coerce_input(
    obj: ObjectDef,
    data: Any,
    current: dict[str, Any] | None,
    resolve_relation: RelationResolver,
) -> dict[str, Any]:
    """Validate a create/update body and return the normalised field values it sets (§5.1, §7.5)."""
    if not isinstance(data, dict):
        raise bad_request(f"Invalid data for object {obj.singular}: expected a JSON object.")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in obj.one_to_many:
            raise bad_request(f"One-to-many relation {key} field does not support write operations.")
        if key in obj.many_to_one:
            values[obj.many_to_one[key]] = _relation_value(obj, key, value, resolve_relation)
            continue
        definition = obj.fields.get(key)
        if definition is None:
            raise bad_request(f"Object {obj.singular} doesn't have any \"{key}\" field.")
        if value is None and not definition.nullable:
            raise bad_request(f"Field {key} is not nullable and has no default value.")
        if definition.is_composite:
            values[key] = _coerce_composite(obj, definition, value, (current or {}).get(key))
        else:
            values[key] = _coerce_scalar(key, definition.type, value, definition.options)
    return values


def _relation_value(
    obj: ObjectDef, relation: str, value: Any, resolve_relation: RelationResolver
) -> str | None:
    """``{"company": null}`` disconnects; ``{"company": {"connect": {"where": {...}}}}`` connects (§5.1)."""
    if value is None:
        return None
    where = value.get("connect", {}).get("where") if isinstance(value, dict) else None
    if not isinstance(where, dict) or not where:
        raise _invalid(relation, value, 'null or {"connect": {"where": {...}}}')
    target = obj.fields[obj.many_to_one[relation]].target
    if target is None:
        raise bad_request(f"Relation {relation} cannot be connected in this stand-in.")
    return resolve_relation(target, where)


def new_record(obj: ObjectDef) -> dict[str, Any]:
    """A record with every field at its default (composites present with null sub-fields)."""
    return {
        name: empty_composite(d.type) if d.is_composite else d.default
        for name, d in obj.fields.items()
    }
