"""A local BigQuery emulator (bqemulator) in a subprocess, on free loopback ports, started offline.

bqemulator needs DuckDB's `spatial` extension and would download it at boot; it is installed from its
PyPI wheel first (`duckdb_extensions.import_extension`), so no network but loopback is needed.

    python -m sync_pipeline.sandbox.bigquery_emulator [--project P] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DEFAULT_PROJECT = "sandbox-project"


@dataclass(frozen=True)
class BigQueryEmulator:
    endpoint: str  # REST base URL, e.g. http://127.0.0.1:40123
    grpc_port: int
    project: str
    pid: int
    log_path: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_spatial_extension() -> None:
    """Copy DuckDB's spatial extension from its wheel into ~/.duckdb, where the emulator loads it."""
    from duckdb_extensions import import_extension

    import_extension("spatial")


def _emulator_command() -> list[str]:
    script = Path(sys.executable).with_name("bqemulator")
    return [str(script)] if script.exists() else [shutil.which("bqemulator") or "bqemulator"]


def _wait_healthy(endpoint: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"bqemulator exited with code {process.returncode}:\n{log_tail}")
        try:
            with urllib.request.urlopen(f"{endpoint}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"bqemulator not healthy after {timeout:.0f} s; log: {log_path}")


@contextmanager
def run_bigquery_emulator(
    project: str = DEFAULT_PROJECT, data_dir: str | Path | None = None, startup_timeout: float = 60.0
) -> Iterator[BigQueryEmulator]:
    """Start bqemulator (ephemeral, or persistent in `data_dir`), yield it once healthy, stop it on exit."""
    install_spatial_extension()
    rest_port, grpc_port = _free_port(), _free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="bqemu-"))
    log_path = log_dir / "bqemulator.log"
    command = [
        *_emulator_command(),
        "start",
        "--rest-host", "127.0.0.1",
        "--rest-port", str(rest_port),
        "--grpc-host", "127.0.0.1",
        "--grpc-port", str(grpc_port),
        "--project", project,
        "--log-level", "warning",
    ]
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        command += ["--persistent", "--data-dir", str(data_dir)]
    # Uploads are staged under $TMPDIR; keep them with this instance so they go away with it.
    env = {**os.environ, "TMPDIR": str(log_dir)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{rest_port}"
    try:
        _wait_healthy(endpoint, process, log_path, startup_timeout)
        yield BigQueryEmulator(endpoint, grpc_port, project, process.pid, log_path)
    finally:
        _stop(process)
        shutil.rmtree(log_dir, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    parser.add_argument("--data-dir", help="keep the data in this directory across restarts")
    args = parser.parse_args(argv)
    # Stop the emulator on SIGTERM and on SIGINT even when started in the background (which ignores SIGINT).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with run_bigquery_emulator(args.project, args.data_dir) as emulator:
        print("BigQuery emulator ready:")
        print(f"  BIGQUERY_EMULATOR_URL={emulator.endpoint} BIGQUERY_PROJECT={emulator.project}")
        print("Ctrl-C to stop.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
