"""Alerts: a failed run (a store step that failed, a record that could not be written, an UNSAFE verdict)
is posted as JSON to the webhook in SYNC_ALERT_WEBHOOK_URL (Slack, Teams, PagerDuty's Events API behind a
relay, or any HTTP endpoint). Unset, the sensor skips: alerts are off.

No `from __future__ import annotations` here: Dagster inspects annotations at definition time.
"""

import os
from typing import Any

import dagster as dg
import httpx

from sync_pipeline.redaction import redact_text

ALERT_WEBHOOK_VARIABLE = "SYNC_ALERT_WEBHOOK_URL"


def alert_payload(job_name: str, run_id: str, error: str | None, webserver_url: str | None) -> dict[str, Any]:
    """What an alert says: which run failed and why (secrets removed), with a link to the run."""
    reason = redact_text(error or "the run failed")[:2000]
    link = f"{webserver_url.rstrip('/')}/runs/{run_id}" if webserver_url else None
    text = f"sync_pipeline: run {run_id} of {job_name} failed: {reason}" + (f" ({link})" if link else "")
    return {"text": text, "job": job_name, "run_id": run_id, "reason": reason, "link": link}


@dg.run_failure_sensor(
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Posts every failed run (an UNSAFE verdict fails its run) to the webhook in "
                f"{ALERT_WEBHOOK_VARIABLE}; does nothing when it is unset.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    url = os.getenv(ALERT_WEBHOOK_VARIABLE)
    if not url:
        return dg.SkipReason(f"alerts are off ({ALERT_WEBHOOK_VARIABLE} is not set)")
    run = context.dagster_run
    steps = [event.message for event in context.get_step_failure_events() if event.message]
    error = "; ".join(steps) or (context.failure_event.message if context.failure_event else None)
    payload = alert_payload(run.job_name, run.run_id, error, os.getenv("DAGSTER_WEBSERVER_URL"))
    httpx.post(url, json=payload, timeout=10).raise_for_status()
    return None
