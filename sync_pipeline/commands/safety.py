"""The safety command: runs every safety check through Dagster and prints PASS / WARN / FAIL per check and
the overall SAFE / SAFE_WITH_WARNINGS / UNSAFE. The checks are the asset checks the UI shows, run by the
same job, and recorded on the same instance when DAGSTER_HOME is set.

Settings come from the environment; what it does not set is read from the project's `.env` (the one the
sandbox writes and `dagster dev` reads), or else from the sandbox's `.sandbox/sandbox.env`, so the command
works from a new terminal. Exit codes: 0 SAFE or SAFE_WITH_WARNINGS, 1 UNSAFE, 2 could not evaluate (a
setting missing, the checks could not run); `--json` prints JSON in every case."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dagster as dg

from sync_pipeline.redaction import redact_text
from sync_pipeline.defs.verdict import evaluation_status
from sync_pipeline.safety.verdict import CheckLine, ordered, overall

EXIT_SAFE, EXIT_UNSAFE, EXIT_ERROR = 0, 1, 2
OVERALL_EXIT = {"SAFE": EXIT_SAFE, "SAFE_WITH_WARNINGS": EXIT_SAFE, "UNSAFE": EXIT_UNSAFE}
HUB_VARIABLE = "SYNC_HUB_DATABASE_URL"


class CouldNotEvaluate(Exception):
    """The checks did not produce a verdict: a setting is missing, or their run failed before any check."""


def _execute(defs: dg.Definitions, instance: dg.DagsterInstance, log_level: str = "WARNING"
             ) -> tuple[dg.ExecuteInProcessResult, list[CheckLine]]:
    job = defs.resolve_job_def("safety_checks_job")
    blocking = {(spec.asset_key, spec.name): spec.blocking
                for checks in defs.asset_checks or [] for spec in checks.check_specs}
    step_of = {(spec.asset_key, spec.name): checks.node_def.name
               for checks in defs.asset_checks or [] for spec in checks.check_specs}
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags={"sync/trigger": "safety-command"},
                                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        reason = evaluation.metadata.get("reason")
        lines.append(CheckLine(evaluation_status(evaluation), evaluation.asset_key.to_user_string(),
                               evaluation.check_name,
                               blocking.get((evaluation.asset_key, evaluation.check_name), False),
                               str(reason.value) if reason else ""))
    step_errors = {event.step_key: _error_text(event.step_failure_data.error)
                   for event in result.get_step_failure_events() if event.step_failure_data.error}
    evaluated = {(line.asset, line.check) for line in lines}
    for (asset_key, name), is_blocking in blocking.items():  # a check that produced nothing is a failure
        if (asset_key.to_user_string(), name) not in evaluated:
            error = step_errors.get(step_of[(asset_key, name)])
            lines.append(CheckLine("FAIL", asset_key.to_user_string(), name, is_blocking,
                                   f"the check did not run: {redact_text(error)}" if error else
                                   "the check did not run"))
    return result, ordered(lines)


def run_checks(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[CheckLine]:
    return _execute(defs, instance)[1]


def refresh_verdict(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """Materialize `safety/verdict` from the results just recorded, so the UI says what the command says
    (its `safe` check fails that run when the verdict is UNSAFE, by design)."""
    defs.resolve_job_def("safety_verdict_job").execute_in_process(
        instance=instance, raise_on_error=False, tags={"sync/trigger": "safety-command"},
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})


def render(lines: list[CheckLine], verdict: str) -> str:
    width = max((len(f"{line.asset} {line.check}") for line in lines), default=10)
    out = [f"{line.status:<4}  {f'{line.asset} {line.check}':<{width}}  {'[blocking] ' if line.blocking else ''}"
           f"{line.reason}" for line in lines]
    counts = {s: sum(line.status == s for line in lines) for s in ("PASS", "WARN", "FAIL")}
    out.append("")
    out.append(f"{verdict}  ({counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed)")
    return "\n".join(out)


# -- settings from the project's env file ------------------------------------------------------------------


def env_file_candidates(cwd: Path) -> list[Path]:
    """Where the settings may be, first found wins: `.env` in the working directory, then the project's
    `.env` and the sandbox's `.sandbox/sandbox.env` in the project directory (the working directory or the
    nearest one above it holding `pyproject.toml` or `.sandbox/`)."""
    candidates = [cwd / ".env"]
    project = next((d for d in (cwd, *cwd.parents)
                    if (d / "pyproject.toml").is_file() or (d / ".sandbox").is_dir()), None)
    if project is not None:
        candidates += [project / ".env", project / ".sandbox" / "sandbox.env"]
    return list(dict.fromkeys(candidates))


def load_env_file(cwd: Path | None = None) -> Path | None:
    """Read the first env file found into os.environ, for the variables the environment does not set
    (read as `dagster dev` reads `.env`); returns the file, or None. One file only: a project's own `.env`
    is never topped up with the sandbox's stores."""
    from dotenv import dotenv_values

    for path in env_file_candidates((cwd or Path.cwd()).resolve()):
        if path.is_file():
            for name, value in dotenv_values(path).items():
                if value is not None and name not in os.environ:
                    os.environ[name] = value
            return path
    return None


# -- the command ---------------------------------------------------------------------------------------


def _error_text(error: Any) -> str:
    """A Dagster error with its causes, most specific last: `resource hub failed: connection refused`."""
    parts: list[str] = []
    while error is not None and len(parts) < 5:
        message = (error.message or "").strip()
        if message and message not in parts:
            parts.append(message)
        error = error.cause
    return ": ".join(parts) or "unknown error"


def evaluate(cwd: Path | None = None) -> tuple[str, list[CheckLine], Path | None]:
    """The verdict, every check's line, and the env file read; raises CouldNotEvaluate."""
    env_file = load_env_file(cwd)
    if not os.getenv(HUB_VARIABLE):
        where = (f"neither in the environment nor in {env_file}" if env_file else
                 f"in the environment, and no .env or .sandbox/sandbox.env was found in {cwd or Path.cwd()} or its "
                 "project directory")
        raise CouldNotEvaluate(f"{HUB_VARIABLE} is not set {where}; start the sandbox (bash scripts/sandbox.sh) "
                               "or set it to the hub's Postgres URL")
    from sync_pipeline.definitions import defs

    with (dg.DagsterInstance.get() if os.getenv("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()) as instance:
        # Dagster's console log stays quiet: what went wrong is in the lines printed (and in the run).
        result, lines = _execute(defs, instance, log_level="CRITICAL")
        if result.get_asset_check_evaluations():
            refresh_verdict(defs, instance)
    if not result.get_asset_check_evaluations() and not result.success:  # not one check ran
        run_failure = result.get_run_failure_event()
        step_failures = result.get_step_failure_events()
        error = (run_failure.job_failure_data.error if run_failure and run_failure.job_failure_data else None) \
            or (step_failures[0].step_failure_data.error if step_failures else None)
        raise CouldNotEvaluate(f"the safety checks could not run (run {result.run_id}): "
                               f"{_error_text(error) if error else 'the run failed'}")
    return overall(lines), lines, env_file


def main(as_json: bool) -> int:
    try:
        verdict, lines, env_file = evaluate()
    except Exception as error:  # noqa: BLE001 - whatever stops the evaluation is reported, not a traceback
        message = redact_text(str(error) if isinstance(error, CouldNotEvaluate)
                              else f"{type(error).__name__}: {error}")
        print(f"sync-pipeline safety: could not evaluate: {' '.join(message.split())}", file=sys.stderr)
        if as_json:
            print(json.dumps({"overall": "ERROR", "error": message, "checks": []}, indent=2))
        return EXIT_ERROR
    if as_json:
        print(json.dumps({"overall": verdict, "env_file": str(env_file) if env_file else None,
                          "checks": [asdict(line) for line in lines]}, indent=2))
    else:
        if env_file:
            print(f"sync-pipeline safety: settings not in the environment read from {env_file}", file=sys.stderr)
        print(render(lines, verdict))
    return OVERALL_EXIT[verdict]
