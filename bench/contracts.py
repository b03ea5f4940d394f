"""CPU cost of the data contracts (`sync_pipeline.model.contracts`) on a first sync's worth of people.

N valid canonical people (as the hub holds them and the stores give them back), validated as the sync
does: `validate_records` at capture, and `schema_for(entity).validate(frame_for(...))` in the contract
checks of the hub and of each store (`safety.checks._contract`: that, with the ids as text and the failures
counted). Each figure is the median of `--repeats` runs, in process CPU seconds (and wall seconds beside it).

    .venv/bin/python bench/contracts.py [--people 100000] [--repeats 3]
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import click

from sync_pipeline.model.canonical import canonical_record
from sync_pipeline.model.contracts import frame_for, schema_for, validate_records
from sync_pipeline.model.entities import entity
from sync_pipeline.safety.checks import Status, _contract

PEOPLE = entity("people")


def person(i: int) -> dict[str, Any]:
    raw = {"first_name": f"Bench{i}", "last_name": "Person", "email": f"bench.{i}@example.com", "city": "Paris"}
    return {"id": str(uuid.uuid4()), **canonical_record(PEOPLE, raw)}


def median_seconds(action: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median CPU and wall seconds of `action` over `repeats` runs."""
    cpu, wall = [], []
    for _ in range(repeats):
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        action()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started_wall)
    return statistics.median(cpu), statistics.median(wall)


@click.command()
@click.option("--people", default=100_000, show_default=True, help="People validated per run")
@click.option("--repeats", default=3, show_default=True, help="Runs per figure (the median is printed)")
def main(people: int, repeats: int) -> None:
    rows = [person(i) for i in range(people)]
    schema_for(PEOPLE)  # built once per process by the sync too

    def records() -> None:
        result = validate_records(PEOPLE, rows)
        assert len(result.valid) == people and not result.rejected

    def schema() -> None:
        schema_for(PEOPLE).validate(frame_for(PEOPLE, rows), lazy=True)

    def contract_check() -> None:
        assert _contract(PEOPLE, [rows], "the bench").status is Status.PASS

    for name, action in (("validate_records", records),
                         ("schema_for(people).validate(frame_for(...))", schema),
                         ("safety.checks._contract", contract_check)):
        cpu, wall = median_seconds(action, repeats)
        print(f"{name:<45} {people:>9,} people: {cpu:6.2f} s CPU ({wall:6.2f} s wall), median of {repeats}")


if __name__ == "__main__":
    main()
