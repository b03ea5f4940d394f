#!/usr/bin/env bash
# Installs everything the sandbox and the tests need on a fresh Debian machine, from the project's own
# files: Debian's PostgreSQL and Chromium, a virtualenv synced to requirements.lock, and DuckDB's spatial
# extension from its PyPI wheel (the BigQuery emulator would otherwise download it at start-up).
# Needs root (or sudo) only when a Debian package is missing. When `uv` is not on PATH it is installed
# into a virtualenv of its own, .tools/uv (Debian's Python refuses `pip install` outside one, PEP 668).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
TOOLS_UV=.tools/uv/bin/uv

# The uv to use: one on PATH, else ours if it is the pinned version; empty if it must be installed.
uv=""
if command -v uv >/dev/null 2>&1; then
  uv=uv
elif [ -x "$TOOLS_UV" ]; then
  case "$("$TOOLS_UV" --version 2>/dev/null)" in
    "uv $UV_VERSION" | "uv $UV_VERSION "*) uv=$TOOLS_UV ;;  # e.g. "uv 0.13.8 (x86_64-unknown-linux-gnu)"
  esac
fi

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# Supabase's transaction pooler is played by Debian's pgbouncer in the tests.
[ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
# Debian splits `python3 -m venv` (ensurepip) into python3-venv; only needed to install uv.
if [ -z "$uv" ] && ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "bootstrap: missing Debian packages: ${need_apt[*]}; install them as root (apt-get install ${need_apt[*]}) and run again" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "bootstrap: apt-get install ${need_apt[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -z "$uv" ]; then
  echo "bootstrap: installing uv $UV_VERSION into .tools/uv"
  rm -rf .tools/uv
  mkdir -p .tools
  printf '*\n' > .tools/.gitignore  # tools of this machine, never committed
  python3 -m venv .tools/uv
  .tools/uv/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
  uv=$TOOLS_UV
fi

if [ ! -x .venv/bin/python ]; then
  "$uv" venv -q --python python3.11 .venv
fi
if ! cmp -s requirements.lock .venv/.synced-lock; then
  "$uv" pip sync -q --python .venv/bin/python requirements.lock
  "$uv" pip install -q --python .venv/bin/python --no-deps -e .
  cp requirements.lock .venv/.synced-lock
fi
.venv/bin/python -c "from duckdb_extensions import import_extension; import_extension('spatial')" >/dev/null
