"""The overall verdict from the checks' results: SAFE, SAFE_WITH_WARNINGS or UNSAFE. One rule for the safety
command, the `safety/verdict` asset and its check, so the three always agree."""

from __future__ import annotations

from dataclasses import dataclass

SAFE, SAFE_WITH_WARNINGS, UNSAFE = "SAFE", "SAFE_WITH_WARNINGS", "UNSAFE"
_ORDER = {"FAIL": 0, "WARN": 1, "PASS": 2}


@dataclass(frozen=True)
class CheckLine:
    status: str  # PASS, WARN or FAIL
    asset: str
    check: str
    blocking: bool
    reason: str
    evaluated_at: str | None = None  # when the result was recorded, where it comes from the instance


def status_of(passed: bool, warn_severity: bool) -> str:
    """A check's status from its Dagster result: a failed check of WARN severity is a warning."""
    if passed:
        return "PASS"
    return "WARN" if warn_severity else "FAIL"


def overall(lines: list[CheckLine]) -> str:
    statuses = {line.status for line in lines}
    if "FAIL" in statuses:
        return UNSAFE
    return SAFE_WITH_WARNINGS if "WARN" in statuses else SAFE


def ordered(lines: list[CheckLine]) -> list[CheckLine]:
    """Failures first, then warnings, then passes; by asset and check within each."""
    return sorted(lines, key=lambda line: (_ORDER[line.status], line.asset, line.check))
