"""Alerts: a failed run is posted to the configured webhook, over real HTTP; unset, nothing is sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import dagster as dg
import psycopg
import pytest

from sync_pipeline.defs.alerts import ALERT_WEBHOOK_VARIABLE, alert_on_run_failure
from sync_pipeline_tests.helpers import insert_person


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()


def _failed_run(four_stores, topology, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute("alter table people add constraint no_mallory check (first_name <> 'Mallory')")
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn, first_name="Mallory", email="mallory@example.com")
    result = four_stores.defs.resolve_job_def("sync_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return result


def _tick(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> Any:
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=failure).for_run_failure()
    return alert_on_run_failure(context)


def test_a_failed_run_is_posted_to_the_webhook(four_stores, topology, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv(ALERT_WEBHOOK_VARIABLE, url)
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "http://dagster.example")
    with dg.DagsterInstance.ephemeral() as instance:
        result = _failed_run(four_stores, topology, instance)
        _tick(instance, result)
    assert len(received) == 1
    alert = received[0]
    assert alert["run_id"] == result.run_id and alert["job"] == "sync_job"
    assert "safety/verdict" in alert["reason"] or "safe" in alert["reason"]
    assert alert["link"] == f"http://dagster.example/runs/{result.run_id}"


def test_alerts_are_off_when_no_webhook_is_set(four_stores, topology, webhook, monkeypatch):
    _, received = webhook
    monkeypatch.delenv(ALERT_WEBHOOK_VARIABLE, raising=False)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _failed_run(four_stores, topology, instance)
        assert isinstance(_tick(instance, result), dg.SkipReason)
    assert received == []
