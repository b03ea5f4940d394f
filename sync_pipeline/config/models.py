"""The sync configuration file as pydantic models, and the views the rest of the sync reads from it.

The models check each value's shape; `checks.py` checks what one part says about another (a natural key
that is a field, a column that maps a real field). `loader.py` turns either kind of error into
`file:line: key.path: reason`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, StringConstraints
from pydantic import Field as Attr

from sync_pipeline.model.fields import Entity, Field, FieldType

IdType = Literal["uuid", "bigint", "text"]
AdoptWins = Literal["most_recent", "this_store", "others"]
DEFAULT_ADOPT_WINS: AdoptWins = "most_recent"

# Entity and field names become asset keys, hub keys and warehouse columns: plain snake_case.
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
# A Postgres identifier as the application spells it (quoted by the sync, so any case is fine).
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=63)]
# A Twenty field (`jobTitle`, a custom `myCustom`) or a composite's sub-field (`name.firstName`).
TWENTY_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
TwentyPath = Annotated[str, StringConstraints(pattern=TWENTY_PATH_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldConfig(_Strict):
    type: FieldType = Attr(description="The canonical type; every store's value is normalised to it.")
    required: bool = Attr(False, description="A record without a value is quarantined.")
    choices: tuple[str, ...] = Attr((), description="The allowed values of an enum (upper-case).")
    references: Name | None = Attr(
        None, description="An entity listed before this one (the field is then a uuid).")
    description: str = ""


class EntityConfig(_Strict):
    description: str = ""
    natural_key: Name | None = Attr(
        None, description="A unique field that matches records across stores (a domain, an e-mail).")
    fields: dict[Name, FieldConfig] = Attr(
        min_length=1, description="Canonical field name -> its definition.")


class TableName(_Strict):
    schema_name: Identifier = Attr("public", alias="schema")
    name: Identifier


class IdColumn(_Strict):
    column: Identifier = "id"
    type: IdType = Attr("uuid", description="The id column's type: uuid, bigint (an identity) or text.")


class TableConfig(_Strict):
    table: TableName
    id: IdColumn = IdColumn(column="id", type="uuid")
    columns: dict[Name, Identifier] = Attr(
        description="Canonical field -> the table's column. A field left out is not carried by this store.")
    ignore_columns: tuple[Identifier, ...] = Attr(
        (), description="The application's columns deliberately not synced (no drift warning).")
    create: bool = Attr(
        False, description="Create the table when missing (the sandbox); false: it must exist.")


class TwentyObjectConfig(_Strict):
    object: Identifier = Attr(description="Twenty's plural object name, as in its REST paths.")
    fields: dict[Name, TwentyPath] = Attr(
        description="Canonical field -> Twenty field or composite sub-field (name.firstName, "
                    "emails.primaryEmail, amount.amountMicros, a custom field). "
                    "A field left out is not carried.")


class WarehouseTableConfig(_Strict):
    table: Name = Attr(
        description="The warehouse table; it carries every canonical field under its own name.")


class _StoreConfig(_Strict):
    adopt_wins: AdoptWins = Attr(
        DEFAULT_ADOPT_WINS,
        description="Whose values win for a record linked by natural key when the store is adopted: the most "
                    "recent modification, this store's, or the other stores'.")


class PostgresStoreConfig(_StoreConfig):
    entities: dict[Name, TableConfig] = {}


class TwentyStoreConfig(_StoreConfig):
    entities: dict[Name, TwentyObjectConfig] = {}


class WarehouseStoreConfig(_StoreConfig):
    entities: dict[Name, WarehouseTableConfig] = {}


class StoresConfig(_Strict):
    """One key per store of `stores/registry.py` (a test holds the two lists equal). A store left out
    carries nothing."""

    twenty: TwentyStoreConfig | None = None
    supabase: PostgresStoreConfig | None = None
    local_db: PostgresStoreConfig | None = None
    bigquery: WarehouseStoreConfig | None = None


STORE_KEYS: tuple[str, ...] = tuple(StoresConfig.model_fields)


@dataclass(frozen=True)
class TableMapping:
    """How a Postgres store holds one entity."""

    schema: str
    table: str
    id_column: str
    id_type: IdType
    columns: dict[str, str]  # canonical field -> column, carried fields only, in the entity's field order
    ignore_columns: tuple[str, ...]
    create: bool


@dataclass(frozen=True)
class TwentyObjectMapping:
    object: str
    fields: dict[str, str]  # canonical field -> dotted Twenty path, carried fields only, in configured order


class SyncConfig(_Strict):
    """The whole file. `entities` is the registry's Entity tuple; the file's entity section is
    `entity_configs`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              title="sync_pipeline configuration")

    entity_configs: dict[Name, EntityConfig] = Attr(
        alias="entities", min_length=1,
        description="In dependency order: a record may only reference entities listed before it.")
    stores: StoresConfig = StoresConfig()
    _source: str = PrivateAttr("<memory>")
    _entities: tuple[Entity, ...] | None = PrivateAttr(None)

    @property
    def source(self) -> str:
        """The file the configuration was read from."""
        return self._source

    @property
    def entities(self) -> tuple[Entity, ...]:
        if self._entities is None:
            self._entities = tuple(_entity(name, spec) for name, spec in self.entity_configs.items())
        return self._entities

    def _store(self, store_key: str) -> _StoreConfig | None:
        if store_key not in STORE_KEYS:
            raise KeyError(f"no store {store_key!r}; the stores are {', '.join(STORE_KEYS)}")
        store: _StoreConfig | None = getattr(self.stores, store_key)
        return store

    def carries(self, store_key: str, entity_name: str) -> bool:
        store = self._store(store_key)
        return store is not None and entity_name in getattr(store, "entities")

    def carried_fields(self, store_key: str, entity_name: str) -> tuple[str, ...]:
        """The fields a store reads and writes for an entity, in the entity's order: a Postgres store's
        `columns`, Twenty's `fields`, every field in the warehouse; () when it does not carry the entity."""
        store = self._store(store_key)
        spec = None if store is None else getattr(store, "entities").get(entity_name)
        if spec is None:
            return ()
        order = self.entity_configs[entity_name].fields
        if isinstance(spec, TableConfig):
            return tuple(f for f in order if f in spec.columns)
        if isinstance(spec, TwentyObjectConfig):
            return tuple(f for f in order if f in spec.fields)
        return tuple(order)

    def adopt_wins(self, store_key: str) -> AdoptWins:
        store = self._store(store_key)
        return DEFAULT_ADOPT_WINS if store is None else store.adopt_wins

    def table_mapping(self, store_key: str, entity_name: str) -> TableMapping | None:
        """The Postgres table of a Postgres store's entity; None when the store does not carry it."""
        store = self._store(store_key)
        if store is None:
            return None
        if not isinstance(store, PostgresStoreConfig):
            raise KeyError(f"store {store_key!r} is not a Postgres store")
        spec = store.entities.get(entity_name)
        if spec is None:
            return None
        order = self.entity_configs[entity_name].fields
        return TableMapping(
            schema=spec.table.schema_name, table=spec.table.name,
            id_column=spec.id.column, id_type=spec.id.type,
            columns={f: spec.columns[f] for f in order if f in spec.columns},
            ignore_columns=spec.ignore_columns, create=spec.create,
        )

    def twenty_mapping(self, entity_name: str) -> TwentyObjectMapping | None:
        """Twenty's object for an entity; None when Twenty does not carry it."""
        spec = self.stores.twenty.entities.get(entity_name) if self.stores.twenty else None
        return None if spec is None else TwentyObjectMapping(object=spec.object, fields=dict(spec.fields))

    def warehouse_table(self, entity_name: str) -> str | None:
        """The BigQuery table of an entity; None when the warehouse does not carry it."""
        spec = self.stores.bigquery.entities.get(entity_name) if self.stores.bigquery else None
        return None if spec is None else spec.table


def _entity(name: str, spec: EntityConfig) -> Entity:
    return Entity(
        name=name,
        description=spec.description,
        natural_key=spec.natural_key,
        fields=tuple(
            Field(field_name, f.type, required=f.required, choices=f.choices, references=f.references,
                  description=f.description)
            for field_name, f in spec.fields.items()
        ),
    )
