"""The entity registry: the one place to add a field or an entity.

Canonical records are flat dicts keyed by field name. Every store maps its own shape to these columns
(`sync_pipeline.stores.*`), the hub stores them as JSON, pandera validates them (`contracts.py`), and the
Postgres and BigQuery DDL is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class FieldType(str, Enum):
    UUID = "uuid"
    TEXT = "text"
    URL = "url"
    EMAIL = "email"
    INTEGER = "integer"
    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    ENUM = "enum"


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    required: bool = False
    choices: tuple[str, ...] = ()
    references: str | None = None  # entity name this uuid points at
    description: str = ""


@dataclass(frozen=True)
class Entity:
    name: str  # plural, as Twenty's REST path and our table names
    fields: tuple[Field, ...]
    natural_key: str | None = None  # unique business key used to match records across stores
    description: str = ""
    twenty_object: str = ""  # Twenty's plural object name
    _by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.fields})

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    @property
    def references(self) -> dict[str, str]:
        return {f.name: f.references for f in self.fields if f.references}

    def field(self, name: str) -> Field:
        return self._by_name[name]


_STAGES = ("NEW", "SCREENING", "MEETING", "PROPOSAL", "CUSTOMER")

# In dependency order: a record may only reference entities listed before it.
ENTITIES: tuple[Entity, ...] = (
    Entity(
        name="companies",
        description="Accounts: one row per company, matched across stores by its domain.",
        natural_key="domain_name",
        twenty_object="companies",
        fields=(
            Field("name", FieldType.TEXT, required=True),
            Field("domain_name", FieldType.URL, description="Primary domain URL, lower-cased origin"),
            Field("employees", FieldType.INTEGER),
            Field("linkedin_url", FieldType.URL),
            Field("annual_recurring_revenue", FieldType.NUMERIC, description="In currency units"),
            Field("currency_code", FieldType.TEXT),
            Field("address_street", FieldType.TEXT),
            Field("address_city", FieldType.TEXT),
            Field("address_postcode", FieldType.TEXT),
            Field("address_country", FieldType.TEXT),
            Field("ideal_customer_profile", FieldType.BOOLEAN, required=True),
        ),
    ),
    Entity(
        name="people",
        description="Contacts: one row per person, matched across stores by primary e-mail.",
        natural_key="email",
        twenty_object="people",
        fields=(
            Field("first_name", FieldType.TEXT, required=True),
            Field("last_name", FieldType.TEXT),
            Field("email", FieldType.EMAIL, required=True, description="Primary e-mail, lower-cased"),
            Field("phone", FieldType.TEXT),
            Field("job_title", FieldType.TEXT),
            Field("city", FieldType.TEXT),
            Field("linkedin_url", FieldType.URL),
            Field("company_id", FieldType.UUID, references="companies"),
        ),
    ),
    Entity(
        name="opportunities",
        description="Deals in the sales pipeline.",
        twenty_object="opportunities",
        fields=(
            Field("name", FieldType.TEXT, required=True),
            Field("amount", FieldType.NUMERIC, description="In currency units"),
            Field("currency_code", FieldType.TEXT),
            Field("close_date", FieldType.TIMESTAMP),
            Field("stage", FieldType.ENUM, required=True, choices=_STAGES),
            Field("company_id", FieldType.UUID, references="companies"),
            Field("point_of_contact_id", FieldType.UUID, references="people"),
        ),
    ),
)

ENTITY_NAMES: tuple[str, ...] = tuple(e.name for e in ENTITIES)
_BY_NAME = {e.name: e for e in ENTITIES}


def entity(name: str) -> Entity:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; known: {', '.join(ENTITY_NAMES)}") from None
