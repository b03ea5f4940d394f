"""The safety command: runs every safety check through Dagster and prints PASS / WARN / FAIL per check and
the overall SAFE / SAFE_WITH_WARNINGS / UNSAFE. The checks are the asset checks the UI shows, run by the
same job, and recorded on the same instance when DAGSTER_HOME is set."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import dagster as dg

OVERALL_EXIT = {"SAFE": 0, "SAFE_WITH_WARNINGS": 0, "UNSAFE": 1}


@dataclass(frozen=True)
class CheckLine:
    status: str  # PASS, WARN or FAIL
    asset: str
    check: str
    blocking: bool
    reason: str


def _status(evaluation: dg.AssetCheckEvaluation) -> str:
    if evaluation.passed:
        return "PASS"
    return "WARN" if evaluation.severity == dg.AssetCheckSeverity.WARN else "FAIL"


def run_checks(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[CheckLine]:
    job = defs.resolve_job_def("safety_checks_job")
    blocking = {(spec.asset_key, spec.name): spec.blocking
                for checks in defs.asset_checks or [] for spec in checks.check_specs}
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags={"trigger": "safety-command"},
                                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        reason = evaluation.metadata.get("reason")
        lines.append(CheckLine(_status(evaluation), evaluation.asset_key.to_user_string(), evaluation.check_name,
                               blocking.get((evaluation.asset_key, evaluation.check_name), False),
                               str(reason.value) if reason else ""))
    evaluated = {(line.asset, line.check) for line in lines}
    for (asset_key, name), is_blocking in blocking.items():  # a check that produced nothing is a failure
        if (asset_key.to_user_string(), name) not in evaluated:
            lines.append(CheckLine("FAIL", asset_key.to_user_string(), name, is_blocking, "the check did not run"))
    order = {"FAIL": 0, "WARN": 1, "PASS": 2}
    return sorted(lines, key=lambda line: (order[line.status], line.asset, line.check))


def overall(lines: list[CheckLine]) -> str:
    statuses = {line.status for line in lines}
    if "FAIL" in statuses:
        return "UNSAFE"
    return "SAFE_WITH_WARNINGS" if "WARN" in statuses else "SAFE"


def render(lines: list[CheckLine], verdict: str) -> str:
    width = max((len(f"{line.asset} {line.check}") for line in lines), default=10)
    out = [f"{line.status:<4}  {f'{line.asset} {line.check}':<{width}}  {'[blocking] ' if line.blocking else ''}"
           f"{line.reason}" for line in lines]
    counts = {s: sum(line.status == s for line in lines) for s in ("PASS", "WARN", "FAIL")}
    out.append("")
    out.append(f"{verdict}  ({counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed)")
    return "\n".join(out)


def main(as_json: bool) -> int:
    from sync_pipeline.definitions import defs

    with (dg.DagsterInstance.get() if os.getenv("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()) as instance:
        lines = run_checks(defs, instance)
    verdict = overall(lines)
    if as_json:
        print(json.dumps({"overall": verdict, "checks": [asdict(line) for line in lines]}, indent=2))
    else:
        print(render(lines, verdict))
    return OVERALL_EXIT[verdict]
