"""`sync-pipeline safety` as an operator runs it from a new terminal: no variables exported, settings in
the project's `.env` (or the sandbox's env file), exit codes 0 / 1 / 2, JSON whatever happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sync_pipeline.commands import safety as command
from sync_pipeline.sandbox.launcher import SandboxPaths, _env_value, _write_env, read_sandbox_env

SCRIPT = str(Path(sys.executable).with_name("sync-pipeline"))
VERDICTS = ("SAFE", "SAFE_WITH_WARNINGS", "UNSAFE")
# The command imports Dagster and runs every check in a subprocess: seconds when idle, minutes on a loaded
# 2-core CI machine.
SUBPROCESS_SECONDS = 600


def _clean_env() -> dict[str, str]:
    """A new terminal: PATH and HOME, nothing of the sandbox, no SYNC_* or DAGSTER_HOME."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}


def _project(tmp_path: Path) -> Path:
    """A project directory of its own, so that no `.env` above it is found."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'elsewhere'\n")
    return project


def _safety(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, "safety", *args], cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=SUBPROCESS_SECONDS)


@pytest.mark.timeout(SUBPROCESS_SECONDS + 60)
def test_without_any_configuration_it_says_so_in_one_line_and_exits_2(tmp_path):
    result = _safety(_project(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SYNC_HUB_DATABASE_URL" in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.timeout(SUBPROCESS_SECONDS + 60)
def test_without_any_configuration_json_is_still_json_and_exits_2(tmp_path):
    result = _safety(_project(tmp_path), "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["overall"] == "ERROR" and "SYNC_HUB_DATABASE_URL" in report["error"]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _sandbox_like_env(topology) -> dict[str, str]:
    """What the sandbox writes, pointed at the test's databases; Twenty and BigQuery left unconfigured."""
    return {"SYNC_HUB_DATABASE_URL": topology.local_dsn, "LOCAL_DATABASE_URL": topology.local_dsn,
            "SUPABASE_DATABASE_URL": topology.supabase_dsn, "SUPABASE_SSLMODE": "disable"}


@pytest.mark.timeout(SUBPROCESS_SECONDS + 60)
def test_it_reads_the_dotenv_in_the_working_directory(topology, tmp_path):
    project = _project(tmp_path)
    (project / ".sandbox").mkdir()
    _write_env(SandboxPaths(project), _sandbox_like_env(topology))  # the sandbox's own writer: .env too
    result = _safety(project)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].split()[0] in VERDICTS, result.stdout
    assert str(project / ".env") in result.stderr


@pytest.mark.timeout(SUBPROCESS_SECONDS + 60)
def test_it_reads_the_sandbox_env_file_from_below_the_project_directory(topology, tmp_path):
    project = _project(tmp_path)
    paths = SandboxPaths(project)
    paths.root.mkdir()
    _write_env(paths, _sandbox_like_env(topology))
    paths.dotenv.unlink()  # only .sandbox/sandbox.env is left
    below = project / "sync_pipeline"
    below.mkdir()
    result = _safety(below, "--json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["overall"] in VERDICTS and report["env_file"] == str(paths.env_file)
    assert report["checks"]


@pytest.mark.timeout(SUBPROCESS_SECONDS + 60)
def test_an_unreachable_hub_is_could_not_evaluate_not_a_traceback(tmp_path):
    project = _project(tmp_path)
    (project / ".env").write_text("SYNC_HUB_DATABASE_URL=postgresql://sync:s3cret@127.0.0.1:1/nowhere\n")
    result = _safety(project, "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    assert json.loads(result.stdout)["overall"] == "ERROR"
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Connection refused" in result.stderr and "s3cret" not in result.stdout + result.stderr


def test_an_error_while_evaluating_is_one_redacted_line_and_json(monkeypatch, capsys):
    def broken(cwd=None):
        raise RuntimeError("connection failed\nDETAIL:  postgresql://sync:s3cret@db.example.com/hub refused")

    monkeypatch.setattr(command, "evaluate", broken)
    assert command.main(as_json=False) == command.EXIT_ERROR
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "s3cret" not in err and "RuntimeError" in err
    assert command.main(as_json=True) == command.EXIT_ERROR
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["overall"] == "ERROR" and "DETAIL" in report["error"] and "s3cret" not in out + err


def test_the_env_file_wins_only_where_the_environment_is_silent(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("export SYNC_TEST_SET_ALREADY='from file'\nexport SYNC_TEST_ONLY_FILE='x y'\n")
    monkeypatch.setenv("SYNC_TEST_SET_ALREADY", "from environment")
    monkeypatch.delenv("SYNC_TEST_ONLY_FILE", raising=False)
    assert command.load_env_file(tmp_path) == tmp_path / ".env"
    assert os.environ["SYNC_TEST_SET_ALREADY"] == "from environment"
    assert os.environ["SYNC_TEST_ONLY_FILE"] == "x y"
    monkeypatch.delenv("SYNC_TEST_ONLY_FILE")


def test_the_sandbox_env_file_sources_in_a_shell_and_reads_the_same_in_python(tmp_path):
    env = {"PLAIN": "abc", "DSN": "postgresql://postgres@127.0.0.1:5432/local_db?sslmode=disable&x=1",
           "SPACES": "two words; and $HOME `id` \"quoted\"", "EMPTY": ""}
    paths = SandboxPaths(tmp_path)
    paths.root.mkdir()
    _write_env(paths, env)
    assert all(line.startswith(("#", "export ")) for line in paths.env_file.read_text().splitlines())
    assert oct(paths.env_file.stat().st_mode & 0o777) == oct(0o600)
    names = " ".join(env)
    shell = subprocess.run(["bash", "-c", f'source "$1"; for n in {names}; do printf "%s=%s\\0" "$n" "${{!n}}"; done',
                            "bash", str(paths.env_file)], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                           capture_output=True, text=True, check=True, timeout=60)
    sourced = dict(item.split("=", 1) for item in shell.stdout.split("\0") if item)
    assert sourced == env
    assert read_sandbox_env(tmp_path) == env
    with pytest.raises(ValueError):
        _env_value("BAD", "it's")
