"""The safety verdict where operators look: the `safety/verdict` asset. Its materialization carries the
overall SAFE / SAFE_WITH_WARNINGS / UNSAFE, the failing and warning checks with their reasons and when each
was evaluated, and the write failures of the run; its blocking `safe` check fails the run when the verdict
is UNSAFE or a record failed to write, so the Runs page's Failed filter shows it.

The verdict is read from the latest result of every check on the instance: the same results the check
dashboard shows and the safety command prints. In a sync run it comes after every check of the run (it is
downstream of every asset of the sync, one level below the deepest); after a run of the checks alone, a
sensor materializes it (`verdict_after_safety_checks`).

No `from __future__ import annotations` here: Dagster inspects the context annotation at definition time.
"""

from datetime import datetime, timezone
from typing import Any

import dagster as dg
from dagster._core.storage.asset_check_execution_record import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES

from sync_pipeline.defs.assets import md_table
from sync_pipeline.safety.verdict import UNSAFE, CheckLine, ordered, overall, status_of

VERDICT_KEY = dg.AssetKey(["safety", "verdict"])
SAFE_CHECK = "safe"


def evaluation_status(evaluation: dg.AssetCheckEvaluation) -> str:
    """PASS, WARN or FAIL of a check's result. Ours say it in their `status` metadata (a warning passes in
    Dagster's terms, so the UI never labels it "Failed"); any other check by its result and severity."""
    status = evaluation.metadata.get("status")
    if status is not None and status.value in ("PASS", "WARN", "FAIL"):
        return str(status.value)
    return status_of(evaluation.passed, evaluation.severity == dg.AssetCheckSeverity.WARN)


def latest_check_lines(instance: dg.DagsterInstance, blocking_by_key: dict[dg.AssetCheckKey, bool]
                       ) -> list[CheckLine]:
    """Every check of the code location (but the verdict's own) as its latest evaluation on the instance:
    a run that is only planned (queued) does not count. A check never evaluated on this instance (the gate's,
    before the first gated run) is a warning: unknown, not known bad."""
    lines = []
    for key, blocking in blocking_by_key.items():
        history = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
        entry = history[0].event if history else None
        event = entry.dagster_event if entry else None
        if entry is None or event is None or event.event_type_value != "ASSET_CHECK_EVALUATION":
            lines.append(CheckLine("WARN", key.asset_key.to_user_string(), key.name, blocking,
                                   "not evaluated yet on this instance"))
            continue
        evaluation = event.asset_check_evaluation_data
        reason = evaluation.metadata.get("reason")
        lines.append(CheckLine(
            evaluation_status(evaluation), key.asset_key.to_user_string(), key.name, blocking,
            str(reason.value) if reason else "",
            evaluated_at=datetime.fromtimestamp(entry.timestamp, timezone.utc).isoformat(timespec="seconds")))
    return ordered(lines)


def build_verdict_asset(upstream: list[dg.AssetKey], checks: list[dg.AssetChecksDefinition]
                        ) -> dg.AssetsDefinition:
    """The verdict over `checks` (every check of the code location), downstream of every asset of the sync."""
    blocking_by_key = {spec.key: spec.blocking for definition in checks for spec in definition.check_specs}

    @dg.asset(
        key=VERDICT_KEY,
        group_name="safety",
        kinds={"python"},
        deps=upstream,
        description="Is the sync safe right now? SAFE / SAFE_WITH_WARNINGS / UNSAFE from the latest result of "
                    "every safety check, with the failing and warning checks and the run's write failures.",
        required_resource_keys={"hub"},
        check_specs=[dg.AssetCheckSpec(SAFE_CHECK, asset=VERDICT_KEY, blocking=True,
                                       description="The verdict is not UNSAFE and no record failed to write "
                                                   "in this run.")],
    )
    def _verdict(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        lines = latest_check_lines(context.instance, blocking_by_key)
        verdict = overall(lines)
        errors = context.resources.hub.hub().run_errors(context.run.run_id)
        problems = [line for line in lines if line.status != "PASS"]
        for error in errors:
            context.log.error(f"{error['operation']} of {error['entity']} in {error['store']} failed for record "
                              f"{error['record_id'] or '(whole batch)'}: {error['error_class']}: {error['message']}")
        reason = (f"{verdict}: {sum(line.status == 'FAIL' for line in lines)} failing, "
                  f"{sum(line.status == 'WARN' for line in lines)} warning of {len(lines)} checks"
                  + (f"; {len(errors)} failures recorded by this run" if errors else ""))
        failing = [f"{line.asset} {line.check}: {line.reason}" for line in problems if line.status == "FAIL"]
        metadata: dict[str, Any] = {
            "verdict": verdict,
            "reason": reason,
            "failing": dg.MetadataValue.json(failing),
            "warning": dg.MetadataValue.json(
                [f"{line.asset} {line.check}: {line.reason}" for line in problems if line.status == "WARN"]),
            "checks": md_table([line.__dict__ for line in problems],
                               ["status", "asset", "check", "reason", "evaluated_at"], width=300),
            "run_failures": md_table(errors, ["store", "entity", "record_id", "operation", "error_class",
                                              "message"], width=None),
            "passed": sum(line.status == "PASS" for line in lines),
        }
        safe = verdict != UNSAFE and not errors
        return dg.MaterializeResult(metadata=metadata, check_results=[dg.AssetCheckResult(
            check_name=SAFE_CHECK, passed=safe, severity=dg.AssetCheckSeverity.ERROR, description=reason,
            metadata={"verdict": verdict, "reason": reason, "run_failures": len(errors)})])

    return _verdict


safety_verdict_job = dg.define_asset_job(
    "safety_verdict_job",
    selection=dg.AssetSelection.assets(VERDICT_KEY),
    description="The safety verdict from the latest check results, after a run of the checks alone.",
    executor_def=dg.in_process_executor,
)
