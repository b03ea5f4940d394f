"""Console scripts: `sync-pipeline install | plan | sync | webhooks | safety | sandbox | demo`."""

from __future__ import annotations

import logging

import click


@click.group()
def main() -> None:
    """sync_pipeline: keeps CRM records consistent across Twenty, Supabase, a local DB and BigQuery."""


@main.command()
@click.option("--print-sql", is_flag=True, help="Print every statement install would run now; run nothing.")
def install(print_sql: bool) -> None:
    """Create the hub schema, install change capture (the sync_cdc schema and one trigger per mapped table;
    app tables only where the configuration says create: true) on every configured Postgres store, and
    create the BigQuery dataset and tables. Idempotent."""
    from sync_pipeline.commands.install import install as install_all

    install_all(click.echo, print_sql=print_sql)


@main.command()
def plan() -> None:
    """Show what the next sync would do, per store and entity: the records it would insert, update and
    delete, its conflicts and who would win, the records it would quarantine and why, and those it would link
    by natural key (adopting a store that already holds records). Nothing is written anywhere. Settings not in
    the environment are read as by `safety`. Exit code 1 when a store could not be planned."""
    from sync_pipeline.commands.plan import run_plan
    from sync_pipeline.commands.safety import load_env_file

    load_env_file()
    raise SystemExit(run_plan(click.echo))


@main.command()
@click.option("--confirm", is_flag=True,
              help="Adopt stores even where more records would be overwritten than the threshold "
                   "(adoption_confirm_threshold); review `sync-pipeline plan` first.")
def sync(confirm: bool) -> None:
    """Run the gated sync (sync_with_safety_check) once in this process, recorded on the Dagster instance of
    DAGSTER_HOME. Exit code 1 when the run failed."""
    from sync_pipeline.commands.safety import load_env_file
    from sync_pipeline.commands.sync import run_sync

    load_env_file()
    raise SystemExit(run_sync(confirm, click.echo))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=int)
def webhooks(host: str, port: int) -> None:
    """Receive Twenty's webhooks (signed with TWENTY_WEBHOOK_SECRET) into the hub inbox."""
    from sync_pipeline.location_resources import open_resources
    from sync_pipeline.stores.twenty.spec import TWENTY
    from sync_pipeline.webhooks.inbox import hub_inbox_sink
    from sync_pipeline.webhooks.receiver import serve_receiver

    with open_resources("hub", TWENTY.key) as (hub_resource, twenty):
        if not twenty.webhook_secret:
            raise click.UsageError("TWENTY_WEBHOOK_SECRET is not set: unsigned webhooks cannot be trusted")
        logging.basicConfig(level=logging.INFO)
        serve_receiver(host, port, twenty.webhook_secret, hub_inbox_sink(hub_resource.hub()), log_level="warning")


@main.command()
@click.option("--port", default=3000, show_default=True, type=int, help="Port of the Dagster UI")
@click.option("--no-ui", is_flag=True, help="Start the stores, sync once and stop (no Dagster UI)")
@click.option("--dagster-storage", type=click.Choice(["sqlite", "postgres"]), default="sqlite", show_default=True,
              help="Where Dagster keeps runs, event logs and schedules: SQLite under .sandbox/dagster_home, or "
                   "the production instance of dagster.yaml (a `dagster` database on the sandbox's Postgres, "
                   "the queued run coordinator). Each keeps its own history.")
def sandbox(port: int, no_ui: bool, dagster_storage: str) -> None:
    """Run the whole topology locally (Postgres as local DB + Supabase, BigQuery emulator, Twenty stand-in,
    webhook receiver) and serve it in the Dagster UI. Run from the project directory; Ctrl-C stops it."""
    from pathlib import Path

    from sync_pipeline.sandbox.launcher import run_sandbox

    if not Path("workspace.yaml").exists():
        raise click.UsageError("run it from the project directory (where workspace.yaml is)")
    run_sandbox(Path.cwd(), port=port, ui=not no_ui, dagster_storage=dagster_storage)


@main.command()
def demo() -> None:
    """Show the guarantees on a running sandbox: a conflict, a replayed webhook and an invalid record."""
    from pathlib import Path

    from sync_pipeline.sandbox.demo import run_demo

    run_demo(Path.cwd())


@main.command()
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON instead, always: {"overall": ..., "checks": [...]}, or '
                   '{"overall": "ERROR", "error": ...} when the checks could not be evaluated.')
def safety(as_json: bool) -> None:
    """Run every safety check and print PASS / WARN / FAIL and SAFE / SAFE_WITH_WARNINGS / UNSAFE.

    Settings not in the environment are read from the project's .env (the working directory's, or the
    project directory's), or else from the sandbox's .sandbox/sandbox.env: after `bash scripts/sandbox.sh`
    it works from any terminal in the project.

    \b
    Exit codes:
      0  SAFE or SAFE_WITH_WARNINGS
      1  UNSAFE
      2  could not evaluate (e.g. SYNC_HUB_DATABASE_URL not set); one line on stderr says why
    """
    from sync_pipeline.commands.safety import main as run_safety

    raise SystemExit(run_safety(as_json))


if __name__ == "__main__":
    main()
