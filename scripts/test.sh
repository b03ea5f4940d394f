#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, then runs pytest. The fixtures start
# their own PostgreSQL, BigQuery emulator, Twenty stand-in and Dagster webserver, and stop them after.
# Two pytest-xdist workers, each with its own servers, share the tests out; conftest.py keeps a module's
# tests together on one worker where they may share fixtures (`--dist loadgroup`). Options given here come
# after, so `-n 0` runs the suite in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder "$@"
