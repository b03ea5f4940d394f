#!/usr/bin/env bash
# The sandbox in one command: installs what is missing, then runs sync_pipeline against local stand-ins of
# every store and serves the Dagster UI on http://127.0.0.1:3000. Options: --port N, --no-ui,
# --dagster-storage postgres (Dagster's production instance: its storage in Postgres). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/sync-pipeline sandbox "$@"
