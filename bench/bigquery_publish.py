"""Publish 100k changed `people` rows to a fresh BigQuery emulator through `BigQueryStore.apply`, in pages.

Runs: 100k new rows, the same rows updated, a replay, then 100 changes on the full table. Each run hands
the store pages of the publish page size (`stores/bigquery/spec.py`), as `pipeline.publish` does, and
prints rows/s, pages, load jobs and MERGE statements, and this process's peak RSS (the emulator's apart).
`--page N` sets another page size (`--page 100000` is one apply for everything, as before pages).

    .venv/bin/python bench/bigquery_publish.py [--rows 100000] [--page 20000]
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid
from datetime import datetime, timezone

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from sync_pipeline.engine.records import GoldenRecord
from sync_pipeline.model.canonical import canonical_record, content_hash
from sync_pipeline.model.entities import entity
from sync_pipeline.sandbox.bigquery_emulator import run_bigquery_emulator
from sync_pipeline.stores.bigquery import ApplyStats, BigQueryStore
from sync_pipeline.stores.bigquery.spec import PUBLISH_PAGE

PEOPLE = entity("people")


def people(ids: list[str], version: int) -> list[GoldenRecord]:
    modified_at = datetime.now(timezone.utc)
    records = []
    for record_id in ids:
        n = uuid.UUID(record_id).int % 100_000_000  # the same values for an id whatever page it is in
        data = canonical_record(PEOPLE, {
            "first_name": f"First{n}", "last_name": f"Last{n} v{version}", "email": f"person{n}@example.com",
            "phone": f"+33 1 {n:08d}", "job_title": "Engineer" if version == 1 else "Manager",
            "city": "Paris", "company_id": str(uuid.UUID(int=n + 1)),
        })
        records.append(GoldenRecord("people", record_id, version, data, False, content_hash(data),
                                    "bench", modified_at))
    return records


def publish(store: BigQueryStore, ids: list[str], version: int, page: int) -> tuple[ApplyStats, int]:
    """Every id at `version`, page by page in id order (the hub's order), each page built when it is sent."""
    total, pages = ApplyStats(), 0
    ordered = sorted(ids)
    for start in range(0, len(ordered), page):
        total.add(store.apply(PEOPLE, people(ordered[start:start + page], version)).stats)
        pages += 1
    return total, pages


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=PUBLISH_PAGE)
    args = parser.parse_args()
    ids = [str(uuid.uuid4()) for _ in range(args.rows)]
    started = time.monotonic()
    with run_bigquery_emulator() as emulator:
        print(f"emulator healthy in {time.monotonic() - started:.1f} s at {emulator.endpoint}; "
              f"page size {args.page:,}")
        client = bigquery.Client(project=emulator.project, credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": emulator.endpoint})
        store = BigQueryStore(client, "crm_sync_bench")
        store.install()
        for label, version in (("insert", 1), ("update", 2), ("replay", 2)):
            s, pages = publish(store, ids, version, args.page)
            print(f"{label}: {args.rows:,} rows in {s.seconds:.2f} s = {args.rows / s.seconds:,.0f} rows/s; "
                  f"{pages} pages, load jobs {s.load_jobs}, MERGE statements {s.merge_statements}, DML "
                  f"statements {s.dml_statements}; inserted {s.inserted:,}, updated {s.updated:,}, stale "
                  f"{s.stale:,}, history rows {s.history_rows:,}; peak RSS so far {peak_rss_mb():,.0f} MB")
        changed = ids[:: max(1, args.rows // 100)][:100]
        s, _ = publish(store, changed, 3, args.page)
        print(f"100 changes on the {args.rows:,}-row table: {s.seconds:.2f} s, updated {s.updated}, "
              f"history rows {s.history_rows}")
        check_started = time.monotonic()
        hub = {r.record_id: (r.version, r.data) for r in people(sorted(ids), 2)}
        hub.update((r.record_id, (r.version, r.data)) for r in people(changed, 3))
        report = store.compare_with_hub(PEOPLE, hub)
        print(f"compare_with_hub: consistent={report.consistent}, {report.store_rows:,} rows, "
              f"{time.monotonic() - check_started:.2f} s")
        print(f"peak RSS of this process: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
