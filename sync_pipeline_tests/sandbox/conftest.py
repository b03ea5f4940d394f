"""Fixtures: a seeded Twenty stand-in subprocess and a loopback webhook receiver."""

from __future__ import annotations

import http.server
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from sync_pipeline.sandbox.twenty.server import StandinServer, run_standin
from sync_pipeline_tests.fixtures import SERVER_READY_SECONDS

SEED_COMPANIES = 20
SEED_PEOPLE = 1000
SEED_OPPORTUNITIES = 30


@pytest.fixture(scope="module")
def standin() -> Iterator[StandinServer]:
    """Seeded server with a budget high enough that only the rate-limit test meets it."""
    with run_standin(
        seed_companies=SEED_COMPANIES,
        seed_people=SEED_PEOPLE,
        seed_opportunities=SEED_OPPORTUNITIES,
        rate_limit_per_minute=100_000,
        rate_limit_per_second=10_000,
        startup_timeout=SERVER_READY_SECONDS,  # seeding included
    ) as server:
        yield server


@pytest.fixture()
def api(standin: StandinServer) -> Iterator[httpx.Client]:
    with standin.client() as client:
        yield client


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A real HTTP server on loopback that records every POST with its raw bytes."""

    def __init__(self) -> None:
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        deliveries = self.deliveries

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                deliveries.put(Delivery(self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/twenty"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float = 60.0) -> Delivery:  # returns on delivery; room for a loaded machine
        return self.deliveries.get(timeout=timeout)

    def drain(self, wait: float = 0.3) -> list[Delivery]:
        found: list[Delivery] = []
        try:
            while True:
                found.append(self.deliveries.get(timeout=wait))
        except queue.Empty:
            return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    hook_receiver = WebhookReceiver()
    yield hook_receiver
    hook_receiver.close()
