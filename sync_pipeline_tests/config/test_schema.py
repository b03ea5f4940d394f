"""The published JSON Schema is the models' own, and the configuration's stores are the registry's."""

from __future__ import annotations

import json

from sync_pipeline.config import STORE_KEYS
from sync_pipeline.config.schema import SCHEMA_PATH, json_schema, schema_text
from sync_pipeline.stores.registry import STORES


def test_published_json_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "sync_config.schema.json is stale: run .venv/bin/python -m sync_pipeline.config.schema")


def test_json_schema_completes_the_keys_an_editor_needs() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert set(schema["properties"]) == {"entities", "stores"}
    assert set(schema["$defs"]["StoresConfig"]["properties"]) == set(STORE_KEYS)
    assert schema["$defs"]["IdColumn"]["properties"]["type"]["enum"] == ["uuid", "bigint", "text"]
    assert json_schema()["$defs"]["TableName"]["properties"]["schema"]["default"] == "public"


def test_the_configuration_knows_exactly_the_registered_stores() -> None:
    assert set(STORE_KEYS) == {spec.key for spec in STORES}
