"""A throwaway PostgreSQL server from Debian's binaries, for the sandbox and the tests.

As root the server runs as the `postgres` user (initdb refuses root). It listens on loopback only, with TLS
when given a certificate (the tests play Supabase's direct connection with it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg


def _pg_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run scripts/bootstrap.sh "
                           "(apt-get install postgresql)")
    return Path(candidates[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(args: list[str]) -> list[str]:
    """The command run as the `postgres` user when we are root (PostgreSQL and pgbouncer refuse root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate (PEM, with its chain) and private key (PEM, unencrypted)."""

    cert_file: Path
    key_file: Path


@dataclass
class PostgresServer:
    data_dir: Path
    port: int

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("drop database if exists {} with (force)").format(
                psycopg.sql.Identifier(name)))


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _tls_options(root: Path, tls: ServerTls) -> str:
    """`ssl=on` with copies of the certificate and key that the server may read (and others may not: it
    refuses a key others can read)."""
    options = "-c ssl=on"
    for name, source in (("ssl_cert_file", tls.cert_file), ("ssl_key_file", tls.key_file)):
        copy = root / f"{name}.pem"
        shutil.copyfile(source, copy)
        copy.chmod(0o600)
        _chown(copy)
        options += f" -c {name}={copy}"
    return options


@contextmanager
def run_postgres(data_dir: Path | None = None, port: int | None = None, durable: bool = True,
                 tls: ServerTls | None = None) -> Iterator[PostgresServer]:
    """Start (initialising if needed) a server on loopback; stop it on exit.

    `durable=False` turns off fsync for test speed; the sandbox keeps its data across restarts. With `tls`
    the server also accepts TLS connections (plain ones too: `sslmode` is the client's choice)."""
    pg_bin = _pg_bin()
    owned_tmp = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="sync-pg-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    _chown(root)
    pgdata = root / "data"
    if not (pgdata / "PG_VERSION").exists():
        initdb = [str(pg_bin / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        subprocess.run(as_postgres(initdb), check=True, capture_output=True)
    settings = " -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        settings += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if tls:
        settings += " " + _tls_options(root, tls)
    # A free port is free when asked, not when the server binds it: another process (a second test worker)
    # may take it in between. A port we chose ourselves is chosen again.
    for _ in range(1 if port else 3):
        chosen = port or free_port()
        start = subprocess.run(as_postgres([str(pg_bin / "pg_ctl"), "-D", str(pgdata), "-l",
                                            str(root / "server.log"), "-w", "-o", f"-p {chosen} -k {root}{settings}",
                                            "start"]), capture_output=True)
        if start.returncode == 0:
            port = chosen
            break
    else:
        raise RuntimeError(f"PostgreSQL did not start (see {root / 'server.log'}): {start.stderr.decode()[-500:]}")
    try:
        yield PostgresServer(root, port)
    finally:
        subprocess.run(as_postgres([str(pg_bin / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        if owned_tmp:
            shutil.rmtree(root, ignore_errors=True)
