#!/usr/bin/env bash
# Installs everything the sandbox and the tests need on a fresh Debian machine, from the project's own
# files: Debian's PostgreSQL and Chromium, a virtualenv synced to requirements.lock, and DuckDB's spatial
# extension from its PyPI wheel (the BigQuery emulator would otherwise download it at start-up).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

command -v uv >/dev/null 2>&1 || python3 -m pip install -q "uv==0.13.8"
if [ ! -x .venv/bin/python ]; then
  uv venv -q --python python3.11 .venv
fi
if ! cmp -s requirements.lock .venv/.synced-lock; then
  uv pip sync -q --python .venv/bin/python requirements.lock
  uv pip install -q --python .venv/bin/python --no-deps -e .
  cp requirements.lock .venv/.synced-lock
fi
.venv/bin/python -c "from duckdb_extensions import import_extension; import_extension('spatial')" >/dev/null
