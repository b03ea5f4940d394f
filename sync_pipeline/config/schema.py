"""The published JSON Schema of the configuration file, generated from its pydantic models, so that
editors complete and check it. Regenerate after changing the models:

    .venv/bin/python -m sync_pipeline.config.schema
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sync_pipeline.config.models import SyncConfig

SCHEMA_PATH = Path(__file__).with_name("sync_config.schema.json")


def json_schema() -> dict[str, Any]:
    schema = SyncConfig.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
