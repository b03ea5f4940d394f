"""What one part of the configuration says about another: each problem as (key path, reason)."""

from __future__ import annotations

from collections.abc import Iterator

from sync_pipeline.config.models import EntityConfig, PostgresStoreConfig, SyncConfig, TwentyStoreConfig
from sync_pipeline.model.fields import FieldType

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

# Names the sync gives its own columns beside the canonical fields (the record id, the warehouse's
# bookkeeping in stores/bigquery/schema.py): a field of that name would collide with them.
RESERVED_FIELD_NAMES = frozenset({"id", "hub_version", "origin_store", "origin_modified_at", "synced_at",
                                  "deleted", "entity"})


def problems(config: SyncConfig) -> Iterator[Problem]:
    yield from _entity_problems(config)
    for store_key in ("supabase", "local_db"):
        store = getattr(config.stores, store_key)
        if store is not None:
            yield from _postgres_problems(config, store_key, store)
    if config.stores.twenty is not None:
        yield from _twenty_problems(config, config.stores.twenty)
    if config.stores.bigquery is not None:
        for name in config.stores.bigquery.entities:
            if name not in config.entity_configs:
                yield ("stores", "bigquery", "entities", name), _no_entity(config, name)


def _no_entity(config: SyncConfig, name: str) -> str:
    return f'no such entity "{name}"; the entities are {", ".join(config.entity_configs)}'


def _no_field(entity_name: str, spec: EntityConfig, name: str) -> str:
    return f'no such field "{name}" in {entity_name}; its fields are {", ".join(spec.fields)}'


def _entity_problems(config: SyncConfig) -> Iterator[Problem]:
    listed: list[str] = []
    for name, spec in config.entity_configs.items():
        at: Loc = ("entities", name)
        if spec.natural_key is not None and spec.natural_key not in spec.fields:
            yield (*at, "natural_key"), _no_field(name, spec, spec.natural_key)
        for field_name, f in spec.fields.items():
            field_at = (*at, "fields", field_name)
            if field_name in RESERVED_FIELD_NAMES:
                yield field_at, f'"{field_name}" is reserved: the sync uses it for a column of its own'
            if f.type is FieldType.ENUM and not f.choices:
                yield (*field_at, "type"), "an enum needs its choices"
            if f.choices and f.type is not FieldType.ENUM:
                yield (*field_at, "choices"), f"only an enum has choices (this field is {f.type.value})"
            if f.references is None:
                continue
            if f.type is not FieldType.UUID:
                yield (*field_at, "type"), "a reference holds the canonical id of a record: its type is uuid"
            if f.references not in config.entity_configs:
                yield (*field_at, "references"), _no_entity(config, f.references)
            elif f.references not in listed:
                yield (*field_at, "references"), (
                    f'"{f.references}" is not listed before {name}: a record may only reference entities '
                    "listed before it (list the entities in dependency order)")
        listed.append(name)


def _carried_references(config: SyncConfig, store_key: str, entity_name: str, fields: list[str],
                        carried: set[str], at: Loc) -> Iterator[Problem]:
    """A reference is translated to the store's own id of its target: the store must carry the target."""
    spec = config.entity_configs[entity_name]
    for field_name in fields:
        target = spec.fields[field_name].references if field_name in spec.fields else None
        if target is not None and target not in carried:
            yield (*at, field_name), f"references {target}, which {store_key} does not carry"


def _postgres_problems(config: SyncConfig, store_key: str, store: PostgresStoreConfig) -> Iterator[Problem]:
    for entity_name, table in store.entities.items():
        at: Loc = ("stores", store_key, "entities", entity_name)
        spec = config.entity_configs.get(entity_name)
        if spec is None:
            yield at, _no_entity(config, entity_name)
            continue
        seen: dict[str, str] = {}
        for field_name, column in table.columns.items():
            if field_name not in spec.fields:
                yield (*at, "columns", field_name), _no_field(entity_name, spec, field_name)
            if column == table.id.column:
                yield (*at, "columns", field_name), f'"{column}" is the id column'
            elif column in seen:
                yield (*at, "columns", field_name), f'column "{column}" already holds {seen[column]}'
            seen.setdefault(column, field_name)
        for i, column in enumerate(table.ignore_columns):
            if column in seen or column == table.id.column:
                yield (*at, "ignore_columns", i), f'"{column}" is synced: it cannot be ignored too'
        yield from _carried_references(config, store_key, entity_name, list(table.columns),
                                       set(store.entities), (*at, "columns"))


def _twenty_problems(config: SyncConfig, store: TwentyStoreConfig) -> Iterator[Problem]:
    for entity_name, obj in store.entities.items():
        at: Loc = ("stores", "twenty", "entities", entity_name)
        spec = config.entity_configs.get(entity_name)
        if spec is None:
            yield at, _no_entity(config, entity_name)
            continue
        seen: dict[str, str] = {}
        scalars = {path for path in obj.fields.values() if "." not in path}
        for field_name, path in obj.fields.items():
            field_at = (*at, "fields", field_name)
            if field_name not in spec.fields:
                yield field_at, _no_field(entity_name, spec, field_name)
            elif spec.fields[field_name].references and "." in path:
                yield field_at, "a reference maps to a join field such as companyId, not a sub-field"
            top = path.split(".", 1)[0]
            if path in seen:
                yield field_at, f'"{path}" already holds {seen[path]}'
            elif "." in path and top in scalars:
                yield field_at, f'"{top}" is mapped whole to another field: it cannot also be a composite'
            seen.setdefault(path, field_name)
        yield from _carried_references(config, "twenty", entity_name, list(obj.fields), set(store.entities),
                                       (*at, "fields"))
