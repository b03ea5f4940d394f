"""`sync-pipeline sync [--confirm]`: the gated sync run once in this process, as the UI launches it, with the
run config flag that confirms an adoption over the threshold."""

from __future__ import annotations

import os
from typing import Any, Callable

import dagster as dg

GATED_SYNC = "sync_with_safety_check"


def confirm_config(confirm: bool) -> dict[str, Any]:
    """The run config that confirms (or not) adopting stores over the threshold, as set in the UI."""
    return {"resources": {"sync_settings": {"config": {"confirm": confirm}}}}


def run_sync(confirm: bool, say: Callable[[str], None] = print) -> int:
    from sync_pipeline.definitions import defs

    instance = dg.DagsterInstance.get() if os.getenv("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    with instance:
        result = defs.resolve_job_def(GATED_SYNC).execute_in_process(
            instance=instance, raise_on_error=False, run_config=confirm_config(confirm),
            tags={"sync/trigger": "command"})
    say(f"{GATED_SYNC} run {result.run_id}: {'succeeded' if result.success else 'failed'}")
    return 0 if result.success else 1
