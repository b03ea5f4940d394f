"""Start the stand-in as a subprocess for tests and the sandbox command."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .__main__ import READY_PREFIX

DEFAULT_API_KEY = "twenty-standin-key"


@dataclass
class StandinServer:
    """Handle on a running stand-in process."""

    base_url: str
    api_key: str
    process: subprocess.Popen[str]
    log_path: str
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = self.client()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client with base URL and Bearer header set (caller closes it)."""
        timeout = kwargs.pop("timeout", 10.0)
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout, **kwargs)

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        """Change fault knobs (names of ``FaultKnobs``); returns all knobs."""
        response = self._http.post("/_standin/faults", json=knobs)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/_standin/stats")
        response.raise_for_status()
        return response.json()

    def reset(self, records: bool = False) -> dict[str, Any]:
        """Restore start-up knobs and zero the counters; ``records=True`` also wipes and re-seeds data."""
        response = self._http.post("/_standin/reset", json={"records": records})
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._http.close()


def _cli_arguments(options: dict[str, Any]) -> list[str]:
    arguments: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            arguments += [flag] if value else []
        elif value is not None:
            arguments += [flag, str(value)]
    return arguments


def _read_ready_line(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:  # keeps draining so the pipe never fills up
        lines.put(line)


@contextlib.contextmanager
def run_standin(
    port: int | None = None,
    api_key: str = DEFAULT_API_KEY,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
    stop_timeout: float = 5.0,
    **options: Any,
) -> Iterator[StandinServer]:
    """Run ``python -m sync_pipeline.sandbox.twenty`` on a loopback port until the block exits.

    ``options`` are CLI flags in snake case, e.g. ``seed_people=1000``, ``rate_limit_per_minute=5``,
    ``state_file=path``, ``restored_as_deleted=True``.
    """
    log_file = tempfile.NamedTemporaryFile("w+", prefix="twenty-standin-", suffix=".log", delete=False)
    command = [
        sys.executable, "-m", "sync_pipeline.sandbox.twenty",
        "--host", host, "--port", str(port or 0), "--api-key", api_key, *_cli_arguments(options),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_ready_line, args=(process, lines), daemon=True).start()
    server: StandinServer | None = None
    try:
        base_url = _wait_for_ready(process, lines, startup_timeout, log_file.name)
        server = StandinServer(base_url=base_url, api_key=api_key, process=process, log_path=log_file.name)
        _wait_until_answering(server, startup_timeout)
        yield server
    finally:
        if server is not None:
            server.close()
        process.terminate()
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


def _wait_for_ready(
    process: subprocess.Popen[str], lines: queue.Queue[str], timeout: float, log_path: str
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if line.startswith(READY_PREFIX):
            return line[len(READY_PREFIX) :].strip()
    with open(log_path) as log:
        tail = log.read()[-4000:]
    raise RuntimeError(f"twenty stand-in did not start (exit code {process.poll()}):\n{tail}")


def _wait_until_answering(server: StandinServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.stats()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
