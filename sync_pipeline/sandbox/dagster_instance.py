"""The sandbox's Dagster instance, `$DAGSTER_HOME/dagster.yaml`, written from the project's `dagster.yaml`.

`sqlite` (the default, fast) copies the file as is: runs, event logs and schedules in SQLite under
DAGSTER_HOME. `postgres` is the production instance the file documents between its `>>> production
instance` markers, uncommented: Dagster's storage in its own Postgres database (the DAGSTER_PG_* variables)
and the queued run coordinator spelled out, with every other setting of the file (run monitoring, run
retries) unchanged. Reading the commented lines themselves keeps the documentation the tested configuration.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dagster_shared.yaml_utils import dump_run_config_yaml, safe_load_yaml

from sync_pipeline.sandbox.postgres import PostgresServer

DAGSTER_STORAGES = ("sqlite", "postgres")
DAGSTER_DB_NAME = "dagster"
BEGIN_MARKER = "# >>> production instance"
END_MARKER = "# <<< production instance"


def production_settings(text: str) -> dict[str, Any]:
    """The commented settings between the production markers of a dagster.yaml, uncommented and parsed."""
    lines = text.splitlines()
    if BEGIN_MARKER not in lines or END_MARKER not in lines:
        raise ValueError(f"dagster.yaml: the production settings must sit between the lines '{BEGIN_MARKER}' "
                         f"and '{END_MARKER}'")
    block = lines[lines.index(BEGIN_MARKER) + 1:lines.index(END_MARKER)]
    if not all(line.startswith("#") for line in block):
        raise ValueError("dagster.yaml: every line between the production markers must be commented out")
    settings = safe_load_yaml("\n".join(line[2:] if line.startswith("# ") else line[1:] for line in block))
    if not isinstance(settings, dict):
        raise ValueError("dagster.yaml: the production markers hold no settings")
    return settings


def production_instance_config(project_yaml: Path) -> dict[str, Any]:
    """The project's instance settings with the production block in place of `run_queue`, which Dagster
    refuses beside an explicit `run_coordinator`."""
    text = project_yaml.read_text()
    config = safe_load_yaml(text)
    config.pop("run_queue", None)
    return {**config, **production_settings(text)}


def write_instance_yaml(project_yaml: Path, dagster_home: Path, storage: str) -> None:
    """`dagster_home/dagster.yaml` for `storage` ("sqlite" or "postgres")."""
    target = dagster_home / "dagster.yaml"
    if storage == "sqlite":
        shutil.copyfile(project_yaml, target)
    elif storage == "postgres":
        target.write_text(f"# Written by sync_pipeline from {project_yaml.name} (its production instance); "
                          "rewritten on every start.\n"
                          + dump_run_config_yaml(production_instance_config(project_yaml), sort_keys=False))
    else:
        raise ValueError(f"Dagster storage {storage!r}: expected one of {', '.join(DAGSTER_STORAGES)}")


def postgres_instance_env(server: PostgresServer, database: str = DAGSTER_DB_NAME) -> dict[str, str]:
    """The DAGSTER_PG_* variables the production instance reads, for `database` on `server` (which trusts
    loopback connections: no password)."""
    return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(server.port), "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": database}
