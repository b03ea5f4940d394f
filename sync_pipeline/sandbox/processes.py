"""The sandbox's child processes: found in this virtualenv, waited for until they answer, and stopped with
their whole session (Dagster's code servers outlive a killed parent)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx


def console_script(name: str) -> list[str]:
    """A console script of this virtualenv (the one running us), whatever is on PATH."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [shutil.which(name) or name]


def wait_for_http(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            name = cast("list[str]", process.args)[0]
            raise RuntimeError(f"{name} exited with code {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s; see {log_path}")


def terminate(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
    wait_or_kill(process, timeout)


def stop_dagster(process: subprocess.Popen[bytes]) -> None:
    """SIGINT is what `dagster dev` shuts down cleanly on, taking its webserver, daemon and code servers."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    wait_or_kill(process, timeout=60)


def wait_or_kill(process: subprocess.Popen[Any], timeout: float) -> None:
    """Wait for a process started in a session of its own; past `timeout`, kill its whole session."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Kill its whole session: dagster's code servers outlive a killed parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
