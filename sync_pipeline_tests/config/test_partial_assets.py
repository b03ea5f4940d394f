"""A store has capture and publish assets, and checks, only for the entities the configuration has it carry:
under the README's example, where the local DB carries nothing, the factories make none for it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from sync_pipeline.config import CONFIG_ENV
from sync_pipeline_tests.config.test_code_location import ROOT, readme_example

FACTORY = ("from sync_pipeline.defs.assets import build_assets; "
           "print(sorted(a.key.to_user_string() for a in build_assets()))")
CHECKED = ("from sync_pipeline.defs.checks import build_checks; "
           "print(sorted({key.asset_key.to_user_string() for group in build_checks() for key in group.check_keys}))")


def _asset_keys_under_readme_example(tmp_path: Path, code: str) -> list[str]:
    """The asset keys `code` prints in a process whose configuration is the README's example."""
    config = tmp_path / "sync.yaml"
    config.write_text(readme_example(), encoding="utf-8")
    built = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, CONFIG_ENV: str(config)},
                           capture_output=True, text=True, timeout=240, check=False)
    assert built.returncode == 0, built.stderr
    return ast.literal_eval(built.stdout.strip())


def test_the_factory_builds_assets_only_for_carried_entities(tmp_path: Path) -> None:
    assert _asset_keys_under_readme_example(tmp_path, FACTORY) == [
        "bigquery/contacts", "bigquery/sync_log", "hub/contacts", "supabase/contacts", "supabase/contacts_changes",
        "twenty/contacts", "twenty/contacts_changes"]  # no local_db/contacts nor local_db/contacts_changes


def test_checks_are_built_only_for_carried_entities(tmp_path: Path) -> None:
    checked = _asset_keys_under_readme_example(tmp_path, CHECKED)
    assert "hub/contacts" in checked and "supabase/contacts" in checked
    assert not [key for key in checked if key.startswith("local_db/")]  # the local DB carries nothing
