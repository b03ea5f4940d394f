"""The code location loads with SYNC_PIPELINE_CONFIG naming another valid file (the README's example),
and refuses to load, naming file, line and key, with an invalid one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sync_pipeline.config import CONFIG_ENV, load_config

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
LOAD = ("import sync_pipeline.definitions as d; from sync_pipeline.model.entities import ENTITY_NAMES; "
        "keys = d.defs.resolve_asset_graph().get_all_asset_keys(); "
        "print(ENTITY_NAMES, sorted(k.to_user_string() for k in keys if k.path[-1] == 'contacts'))")


def readme_example() -> str:
    """The example file of the README's section on configuring the sync."""
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## Configuring the sync for your own schema"):]
    start = section.index("```yaml\n") + len("```yaml\n")
    return section[start:section.index("```\n", start)]


def load_code_location(config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, CONFIG_ENV: str(config)}
    return subprocess.run([sys.executable, "-c", LOAD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240, check=False)


def test_the_code_location_loads_the_configured_entities(tmp_path: Path) -> None:
    config = tmp_path / "sync.yaml"
    config.write_text(readme_example(), encoding="utf-8")
    contacts = load_config(config).table_mapping("supabase", "contacts")
    assert contacts is not None and (contacts.id_type, contacts.columns) == (
        "bigint", {"full_name": "full_name", "email": "email_address"})

    loaded = load_code_location(config)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("('contacts',) [")
    assert "'hub/contacts'" in loaded.stdout and "'twenty/contacts'" in loaded.stdout


def test_an_invalid_configuration_stops_the_code_location_with_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "sync.yaml"
    example = readme_example()
    config.write_text(example.replace("email: email_address", "emial: email_address"), encoding="utf-8")
    line = 1 + next(i for i, text in enumerate(example.splitlines()) if "email: email_address" in text)

    loaded = load_code_location(config)
    assert loaded.returncode != 0
    error = loaded.stderr.splitlines()[-1]
    assert (f"{config}:{line}: stores.supabase.entities.contacts.columns.emial: "
            'no such field "emial" in contacts') in error
    # The README shows this very message.
    shown = error[error.index(str(config)):].replace(str(config), "sync.yaml")
    assert shown in README.read_text(encoding="utf-8")
