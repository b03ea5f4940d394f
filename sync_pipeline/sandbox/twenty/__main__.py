"""``python -m sync_pipeline.sandbox.twenty``: serve the Twenty stand-in with uvicorn."""

from __future__ import annotations

import asyncio
import socket
import sys

import click
import uvicorn

from .app import create_app
from .config import AUTH_STYLES, RATE_LIMIT_STYLES, FaultKnobs, StandinConfig

READY_PREFIX = "twenty-standin ready on "


class _AnnouncingServer(uvicorn.Server):
    """Prints the ready line once the socket is bound (``--port 0`` picks a free port)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        print(f"{READY_PREFIX}http://{host}:{port}", flush=True)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int, help="0 = any free port (see ready line)")
@click.option("--api-key", required=True, envvar="TWENTY_STANDIN_API_KEY", help="Bearer token to accept")
@click.option("--api-key-name", default="sync-bot", show_default=True, help="createdBy/updatedBy name")
@click.option("--seed-companies", default=0, show_default=True, type=int)
@click.option("--seed-people", default=0, show_default=True, type=int)
@click.option("--seed-opportunities", default=0, show_default=True, type=int)
@click.option("--state-file", type=click.Path(dir_okay=False), help="SQLite file kept across restarts")
@click.option("--page-size-max", default=60, show_default=True, type=int, help="60, or 200 (2026)")
@click.option("--batch-max", default=60, show_default=True, type=int)
@click.option("--rate-limit-per-minute", default=100, show_default=True, type=int)
@click.option("--rate-limit-per-second", default=100, show_default=True, type=int)
@click.option("--rate-limit-style", default="2026", show_default=True, type=click.Choice(RATE_LIMIT_STYLES))
@click.option("--auth-style", default="2025", show_default=True, type=click.Choice(AUTH_STYLES))
@click.option("--error-rate", default=0.0, show_default=True, type=float, help="probability of a random 500")
@click.option("--latency-seconds", default=0.0, show_default=True, type=float)
@click.option("--fail-next", default=0, show_default=True, type=int, help="next N requests answer 500")
@click.option("--throttle-next", default=0, show_default=True, type=int, help="next N requests answer 429")
@click.option("--webhook-duplicates", default=1, show_default=True, type=int)
@click.option("--webhook-drop-rate", default=0.0, show_default=True, type=float)
@click.option("--webhook-delay-seconds", default=0.0, show_default=True, type=float)
@click.option("--restored-as-deleted", is_flag=True, help="send restore events as `{object}.deleted`")
@click.option("--webhook-allow-any-host", is_flag=True, help="also deliver to non-loopback targets")
@click.option("--log-level", default="warning", show_default=True)
def main(
    host: str,
    port: int,
    api_key: str,
    api_key_name: str,
    seed_companies: int,
    seed_people: int,
    seed_opportunities: int,
    state_file: str | None,
    page_size_max: int,
    batch_max: int,
    webhook_allow_any_host: bool,
    log_level: str,
    **knobs: object,
) -> None:
    """Serve a local imitation of the Twenty CRM REST API (contract: docs/twenty-api.md)."""
    faults = FaultKnobs()
    try:
        faults.update(knobs)
    except ValueError as problem:
        raise click.BadParameter(str(problem)) from None
    config = StandinConfig(
        api_key=api_key,
        api_key_name=api_key_name,
        state_file=state_file,
        page_size_max=page_size_max,
        batch_max=batch_max,
        seed_companies=seed_companies,
        seed_people=seed_people,
        seed_opportunities=seed_opportunities,
        webhook_allow_any_host=webhook_allow_any_host,
        faults=faults,
    )
    app = create_app(config)
    uvicorn_config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
    server = _AnnouncingServer(uvicorn_config)
    asyncio.run(server.serve())
    sys.exit(0 if server.started else 1)


if __name__ == "__main__":
    main()
