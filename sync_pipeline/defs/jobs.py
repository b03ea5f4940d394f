"""Jobs. Steps run in one process: a sync is a short chain of I/O-bound steps, and a subprocess per step
costs more than the work on a small machine."""

from __future__ import annotations

import dagster as dg

sync_job = dg.define_asset_job(
    "sync_job",
    selection=dg.AssetSelection.all(),
    description="Capture every source, resolve in the hub, publish to every target.",
    executor_def=dg.in_process_executor,
)
