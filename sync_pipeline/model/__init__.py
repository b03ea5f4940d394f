"""The canonical model: one registry of entities, their fields, keys, contracts and store mappings."""

from sync_pipeline.model.entities import ENTITIES, ENTITY_NAMES, Entity, Field, FieldType, entity

__all__ = ["ENTITIES", "ENTITY_NAMES", "Entity", "Field", "FieldType", "entity"]
