"""Publish 100k changed `people` rows to a fresh BigQuery emulator through `BigQueryStore.apply`.

Two runs: 100k new rows, then the same 100k rows updated. Prints rows/s and the load jobs and MERGE
statements each run used (the goal: one of each per table per run).

    .venv/bin/python bench/bigquery_publish.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import datetime, timezone

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.canonical import canonical_record, content_hash
from sync_pipeline.model.entities import entity
from sync_pipeline.sandbox.bigquery_emulator import run_bigquery_emulator
from sync_pipeline.stores.bigquery import BigQueryStore

PEOPLE = entity("people")


def people(ids: list[str], version: int) -> list[GoldenRecord]:
    modified_at = datetime.now(timezone.utc)
    records = []
    for n, record_id in enumerate(ids):
        data = canonical_record(PEOPLE, {
            "first_name": f"First{n}", "last_name": f"Last{n} v{version}", "email": f"person{n}@example.com",
            "phone": f"+33 1 {n:08d}", "job_title": "Engineer" if version == 1 else "Manager",
            "city": "Paris", "company_id": str(uuid.UUID(int=n + 1)),
        })
        records.append(GoldenRecord("people", record_id, version, data, False, content_hash(data),
                                    "bench", modified_at))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    ids = [str(uuid.uuid4()) for _ in range(args.rows)]
    started = time.monotonic()
    with run_bigquery_emulator() as emulator:
        print(f"emulator healthy in {time.monotonic() - started:.1f} s at {emulator.endpoint}")
        client = bigquery.Client(project=emulator.project, credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": emulator.endpoint})
        store = BigQueryStore(client, "crm_sync_bench")
        store.install()
        for label, version in (("insert", 1), ("update", 2)):
            records = people(ids, version)
            result = store.apply(PEOPLE, records)
            s = result.stats
            rate = len(records) / s.seconds
            print(f"{label}: {len(records):,} rows in {s.seconds:.2f} s = {rate:,.0f} rows/s; "
                  f"load jobs {s.load_jobs}, MERGE statements {s.merge_statements}, DML statements "
                  f"{s.dml_statements} (MERGE + history INSERT); inserted {s.inserted:,}, updated "
                  f"{s.updated:,}, deleted {s.deleted:,}, stale {s.stale:,}, history rows {s.history_rows:,}")
        replay = store.apply(PEOPLE, records)
        print(f"replay: {replay.stats.seconds:.2f} s, stale {replay.stats.stale:,}, changed "
              f"{replay.stats.inserted + replay.stats.updated + replay.stats.deleted}")
        check_started = time.monotonic()
        report = store.compare_with_hub(PEOPLE, {r.record_id: (r.version, r.data) for r in records})
        print(f"compare_with_hub: consistent={report.consistent}, {report.store_rows:,} rows, "
              f"{time.monotonic() - check_started:.2f} s")
        total = store.total_stats
        print(f"total: load jobs {total.load_jobs}, MERGE statements {total.merge_statements} "
              f"over 3 runs of 1 table")


if __name__ == "__main__":
    main()
