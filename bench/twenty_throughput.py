"""Throughput of TwentyClient batch upserts against the stand-in at a scaled rate limit.

The stand-in and the client are both set to N requests per minute; with batches of 60 the limit's
capacity is N x 60 records per minute. The default (3,000 people at 50 requests/min) takes about a
minute. Prints the records/min achieved as a fraction of that capacity, 429s received, failed records.

    .venv/bin/python bench/twenty_throughput.py [--records 3000] [--requests-per-minute 50]
"""

from __future__ import annotations

import time
import uuid

import click

from sync_pipeline.model.entities import entity
from sync_pipeline.sandbox.twenty.server import run_standin
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.mapping import to_twenty


def _people(count: int) -> list[dict[str, object]]:
    """Canonical people mapped to Twenty payloads, as the publish step would send them."""
    people = entity("people")
    return [
        to_twenty(
            people,
            {
                "id": str(uuid.uuid4()),
                "first_name": f"Bench{index}",
                "last_name": "Person",
                "email": f"bench.{index}.{uuid.uuid4().hex[:6]}@example.com",
                "phone": "+33 612345678",
                "job_title": "Tester",
                "city": "Paris",
                "linkedin_url": None,
                "company_id": None,
            },
            lambda entity_name, canonical_id: None,
        )
        for index in range(count)
    ]


@click.command()
@click.option("--records", default=3000, show_default=True)
@click.option("--requests-per-minute", "rpm", default=50, show_default=True, help="stand-in limit")
@click.option("--client-rpm", type=float, default=None, help="client pacing (default: the limit)")
@click.option("--batch-size", default=60, show_default=True)
def main(records: int, rpm: int, client_rpm: float | None, batch_size: int) -> None:
    payloads = _people(records)
    with run_standin(rate_limit_per_minute=rpm) as standin:
        with TwentyClient(
            standin.base_url, standin.api_key, requests_per_minute=client_rpm or rpm, batch_size=batch_size
        ) as twenty:
            started = time.monotonic()
            result = twenty.batch_create("people", payloads)
            elapsed = time.monotonic() - started
        server = standin.stats()

    achieved = len(result.accepted) / (elapsed / 60)
    capacity = rpm * batch_size
    print(f"records sent          {records} in {twenty.requests} requests, {elapsed:.1f} s")
    print(f"records/min achieved  {achieved:,.0f} of {capacity:,} ({rpm} req/min x {batch_size})")
    print(f"fraction of limit     {achieved / capacity:.3f}")
    print(f"429s received         {twenty.rate_limited_responses} (stand-in: {server['rate_limited']})")
    print(f"seconds throttled     {twenty.seconds_throttled:.1f} (client pacing + Retry-After)")
    print(f"failed records        {len(result.failed)}")
    print(f"people stored         {server['records']['people']['live']} (expected {records}, none twice)")


if __name__ == "__main__":
    main()
