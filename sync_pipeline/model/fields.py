"""The shapes of the canonical model: an entity, its fields and their types.

They live apart from the registry (`entities.py`) because the sync configuration builds them: the
configuration imports this module, and the registry imports the configuration.
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
    name: str  # plural: the hub's entity name, the asset keys, the warehouse's default table
    fields: tuple[Field, ...]
    natural_key: str | None = None  # unique business key used to match records across stores
    description: str = ""
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
