"""An entity as one Postgres store holds it: the configured table (`config.TableMapping`), its id column and
type, and its columns for the carried canonical fields, with the types the sync expects of them."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from sync_pipeline.config import SyncConfig, TableMapping
from sync_pipeline.model.entities import Entity, FieldType

# The column type the sync writes for each canonical type (the stage's types, those of a table it creates).
PG_TYPES: dict[FieldType, str] = {
    FieldType.UUID: "uuid",
    FieldType.TEXT: "text",
    FieldType.URL: "text",
    FieldType.EMAIL: "text",
    FieldType.INTEGER: "int8",
    FieldType.NUMERIC: "numeric",
    FieldType.BOOLEAN: "bool",
    FieldType.TIMESTAMP: "timestamptz",
    FieldType.ENUM: "text",
}
ID_TYPES = {"uuid": "uuid", "bigint": "int8", "text": "text"}

# The app column types (`pg_type.typname`) the sync reads and writes for each type it expects, by cast (a
# value a narrower column cannot hold fails alone); any other type is drift. A user enum type holds text too.
COMPATIBLE: dict[str, frozenset[str]] = {
    "uuid": frozenset({"uuid"}),
    "text": frozenset({"text", "varchar", "bpchar", "citext"}),
    "int8": frozenset({"int2", "int4", "int8"}),
    "numeric": frozenset({"numeric"}),
    "bool": frozenset({"bool"}),
    "timestamptz": frozenset({"timestamptz", "timestamp"}),
}


class NotCarried(LookupError):
    """The store's configuration does not carry the entity."""


@dataclass(frozen=True)
class MappedTable:
    """One entity's table in one Postgres store."""

    store: str
    entity: Entity
    mapping: TableMapping
    # canonical field -> the column type the sync writes (a reference takes the referenced table's id type)
    field_types: dict[str, str]

    @classmethod
    def of(cls, config: SyncConfig, store: str, entity: Entity) -> MappedTable:
        mapping = config.table_mapping(store, entity.name)
        if mapping is None:
            raise NotCarried(f"{store} does not carry {entity.name} (no table configured)")
        types = {}
        for name in mapping.columns:
            f = entity.field(name)
            target = config.table_mapping(store, f.references) if f.references else None
            types[name] = ID_TYPES[target.id_type] if target else PG_TYPES[f.type]
        return cls(store, entity, mapping, types)

    @property
    def key(self) -> str:
        """How the sync's own tables (change log, row versions) name the table."""
        return f"{self.mapping.schema}.{self.mapping.table}"

    @property
    def label(self) -> str:
        return f"{self.store} table {self.key} ({self.entity.name})"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.mapping.schema, self.mapping.table)

    @property
    def id_column(self) -> sql.Identifier:
        return sql.Identifier(self.mapping.id_column)

    @property
    def id_type(self) -> str:
        return ID_TYPES[self.mapping.id_type]

    @property
    def fields(self) -> list[str]:
        """The carried canonical fields, in the entity's order."""
        return list(self.mapping.columns)

    @property
    def columns(self) -> list[str]:
        """The app columns of the carried fields, in the same order."""
        return list(self.mapping.columns.values())

    def select_list(self, alias: str = "t") -> sql.Composable:
        """`t.<id>::text as id, t.<column> as <field>, ...`: a row under canonical names, its id as text."""
        a = sql.Identifier(alias)
        return sql.SQL(", ").join([
            sql.SQL("{}.{}::text as id").format(a, self.id_column),
            *(sql.SQL("{}.{} as {}").format(a, sql.Identifier(column), sql.Identifier(name))
              for name, column in self.mapping.columns.items())])

    def ids_param(self) -> sql.Composable:
        """A text[] parameter cast to an array of the id type."""
        return sql.SQL("%b::text[]::{}[]").format(sql.SQL(self.id_type))


def expected_types(table: MappedTable) -> dict[str, str]:
    """App column -> the type the sync writes to it (the id column included)."""
    return {table.mapping.id_column: table.id_type,
            **{column: table.field_types[name] for name, column in table.mapping.columns.items()}}
