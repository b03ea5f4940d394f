"""The steps of a sync, free of Dagster so that tests call them directly: capture (store -> hub inbox), resolve
(inbox -> golden records), publish (golden records -> store), the adoption of a store's records on its first
capture, and reconciliation. `changes` holds what they share, `adoption` the first capture's adoption, `sync`
the rest."""

from sync_pipeline.pipeline.adoption import ADOPTION_PAGE, adopt
from sync_pipeline.pipeline.changes import CHANGE_LOG_PAGE, resolve, to_captured
from sync_pipeline.pipeline.sync import (
    AdoptionPending,
    CaptureNotReady,
    CaptureStats,
    PublishStats,
    ReconcileStats,
    capture,
    close_errors_found_held,
    process_hints,
    publish,
    reconcile,
    take_in_edits,
)

__all__ = ["ADOPTION_PAGE", "CHANGE_LOG_PAGE", "AdoptionPending", "CaptureNotReady", "CaptureStats", "PublishStats",
           "ReconcileStats", "adopt", "capture", "close_errors_found_held", "process_hints", "publish", "reconcile",
           "resolve", "take_in_edits", "to_captured"]
