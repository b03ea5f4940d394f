#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, then runs pytest. The fixtures start
# their own PostgreSQL, BigQuery emulator, Twenty stand-in and Dagster webserver, and stop them after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
