"""The entity registry, built from the sync configuration (`sync_pipeline.config`: the file
`SYNC_PIPELINE_CONFIG` names, or the shipped default). Add a field or an entity there.

Canonical records are flat dicts keyed by field name. Every store maps its own shape to these columns
(`sync_pipeline.stores.*`), the hub stores them as JSON, pandera validates them (`contracts.py`), and the
Postgres and BigQuery DDL is generated from them. Importing this module validates the configuration: a
mistake in the file stops the code location from loading, with the file, line and key in the message.
"""

from __future__ import annotations

from sync_pipeline.config import active_config
from sync_pipeline.model.fields import Entity, Field, FieldType

__all__ = ["ENTITIES", "ENTITY_NAMES", "Entity", "Field", "FieldType", "entity"]

# In dependency order: a record may only reference entities listed before it.
ENTITIES: tuple[Entity, ...] = active_config().entities

ENTITY_NAMES: tuple[str, ...] = tuple(e.name for e in ENTITIES)
_BY_NAME = {e.name: e for e in ENTITIES}


def entity(name: str) -> Entity:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; known: {', '.join(ENTITY_NAMES)}") from None
