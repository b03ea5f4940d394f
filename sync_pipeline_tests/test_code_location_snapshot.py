"""The code location's Dagster names, checked against a snapshot: every asset (group, kinds, deps), asset
check (asset:check name, blocking or not), job (what it selects), sensor (what it starts or watches), schedule (cron, job)
and resource key. Refactoring the internals must not rename, regroup or drop any of them: runs, cursors,
schedules' ticks and the UI's history are keyed by these names.

The definitions read the environment at import (store URLs, SYNC_INTERVAL_MINUTES), so they are loaded in
subprocesses with a controlled environment: once with no store configured and once with every store
configured, and both must give the same names. The poll schedule's cron follows SYNC_INTERVAL_MINUTES; the
snapshot records it at its default.

On a deliberate change, rewrite the snapshot and commit it with the change:

    UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest sync_pipeline_tests/test_code_location_snapshot.py
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SNAPSHOT = Path(__file__).parent / "snapshots" / "code_location.json"
ROOT = Path(__file__).resolve().parent.parent
UPDATE_HINT = ("If the change is deliberate, rewrite the snapshot and commit it with the change:\n"
               "    UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest sync_pipeline_tests/test_code_location_snapshot.py")

# Everything the code location reads from the environment, now or plausibly later: dropped for the load.
_PROJECT_ENV_PREFIXES = ("SYNC_", "LOCAL_DATABASE", "SUPABASE_", "TWENTY_", "BIGQUERY_", "GOOGLE_", "DAGSTER_")
# Every store configured, with placeholders: nothing connects while the definitions load.
_CONFIGURED = {
    "SYNC_HUB_DATABASE_URL": "postgresql://placeholder@127.0.0.1:1/hub",
    "LOCAL_DATABASE_URL": "postgresql://placeholder@127.0.0.1:1/local",
    "SUPABASE_DATABASE_URL": "postgresql://placeholder@127.0.0.1:1/supabase",
    "SUPABASE_SSLMODE": "disable",
    "TWENTY_API_URL": "http://127.0.0.1:1",
    "TWENTY_API_KEY": "placeholder",
    "TWENTY_WEBHOOK_SECRET": "placeholder",
    "TWENTY_REQUESTS_PER_MINUTE": "60",
    "BIGQUERY_PROJECT": "placeholder",
    "BIGQUERY_DATASET": "placeholder",
    "BIGQUERY_LOCATION": "EU",
    "BIGQUERY_EMULATOR_URL": "http://127.0.0.1:1",
}


def _key(key: Any) -> str:
    return key.to_user_string()


def _check(check: Any) -> str:
    return f"{_key(check.asset_key)}:{check.name}"


def describe_code_location() -> dict[str, Any]:
    """The code location's names as plain, sorted data (run in the subprocess)."""
    import dagster as dg

    from sync_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets[_key(key)] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(_key(k) for k in node.parent_keys),
        }
    checks = {_check(check): {"blocking": graph.get_check_spec(check).blocking}
              for check in sorted(graph.asset_check_keys, key=_check)}

    jobs = {}
    for job in defs.jobs or []:
        if isinstance(job, dg.JobDefinition) and not job.asset_layer.executable_asset_keys:
            jobs[job.name] = {"type": "op job", "ops": sorted(job.graph.node_names())}
        else:
            selection = job.selection if hasattr(job, "selection") else None
            assert selection is not None, f"job {job.name}: neither an asset job nor an op job"
            jobs[job.name] = {
                "type": "asset job",
                "assets": sorted(_key(k) for k in selection.resolve(graph)),
                "checks": sorted(_check(c) for c in selection.resolve_checks(graph)),
            }

    sensors = {}
    for sensor in defs.sensors or []:
        entry: dict[str, Any] = {"type": sensor.sensor_type.value.lower(),
                                 "targets": sorted(t.job_name for t in sensor.targets)}
        monitored = getattr(sensor, "_monitored_jobs", None)  # run status sensors: the jobs they watch
        if monitored is not None:
            entry["monitored_jobs"] = sorted(j.name for j in monitored)
        sensors[sensor.name] = entry

    schedules = {s.name: {"cron": s.cron_schedule, "timezone": s.execution_timezone, "job": s.job_name}
                 for s in defs.schedules or []}

    return {"assets": assets, "asset_checks": checks, "jobs": dict(sorted(jobs.items())),
            "sensors": dict(sorted(sensors.items())), "schedules": dict(sorted(schedules.items())),
            "resources": sorted(defs.resources or {})}


def render(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True) + "\n"


def _load_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROJECT_ENV_PREFIXES)}
    return {**env, **extra, "PYTHONPATH": str(ROOT)}


def _start(extra: dict[str, str]) -> subprocess.Popen[str]:
    code = ("import json, sys\n"
            "from sync_pipeline_tests.test_code_location_snapshot import describe_code_location, render\n"
            "sys.stdout.write(render(describe_code_location()))\n")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=_load_env(extra), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(name: str, proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, f"loading the definitions ({name}) failed:\n{err[-4000:]}"
    return out


def _diff(expected: str, actual: str, expected_name: str, actual_name: str) -> str:
    return "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                        fromfile=expected_name, tofile=actual_name))


def test_code_location_matches_snapshot() -> None:
    # Both loads at once: each spends most of its time importing Dagster.
    bare_proc, configured_proc = _start({}), _start(_CONFIGURED)
    bare, configured = _finish("no store configured", bare_proc), _finish("every store configured", configured_proc)

    if bare != configured:
        pytest.fail("the code location's names depend on the environment:\n"
                    + _diff(bare, configured, "no store configured", "every store configured"), pytrace=False)

    if os.getenv("UPDATE_SNAPSHOT"):
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(bare)
        return
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if bare != expected:
        pytest.fail(f"the code location no longer matches {SNAPSHOT.relative_to(ROOT)}:\n"
                    + _diff(expected, bare, "snapshot", "code location") + "\n" + UPDATE_HINT, pytrace=False)
