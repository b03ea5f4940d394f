"""The schema checks of a Postgres store, as plain functions returning Verdicts (Dagster wraps them in
`defs/checks.py`, tests call them directly).

- Drift: the configured columns of each mapped table against the live catalog. A column gone or of a type
  the sync cannot write is a FAIL naming store, table and column (the store's capture and publish refuse
  to run meanwhile, the other stores sync); a column neither mapped nor in `ignore_columns` is a WARN.
- Row-level security: Supabase's Data API serves every table of its exposed schemas to whoever holds the
  project's anon key, unless row-level security is on (Supabase's linter calls that an error). A synced
  table there with RLS off is a FAIL.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sync_pipeline.model.entities import Entity
from sync_pipeline.safety.checks import Verdict
from sync_pipeline.stores.postgres.catalog import LiveTable
from sync_pipeline.stores.postgres.drift import Drift
from sync_pipeline.stores.postgres.store import DATA_API_SCHEMAS, PostgresStore


def drift_verdict(store: str, entity: Entity, problems: Sequence[Drift]) -> Verdict:
    """FAIL on any blocking problem, WARN on unmapped columns, else PASS; every problem in the metadata."""
    evidence = {"blocking": [p.message for p in problems if p.blocking],
                "unmapped_columns": [p.column for p in problems if not p.blocking]}
    blocking = [p for p in problems if p.blocking]
    if blocking:
        return Verdict.fail("; ".join(p.message for p in blocking)
                            + f": {store} is held back until the table or the configuration is fixed",
                            **evidence)
    if problems:
        return Verdict.warn("; ".join(p.message for p in problems) + " (add them to the mapping or to "
                            "ignore_columns)", **evidence)
    return Verdict.passed(f"{entity.name} in {store}: every configured column is there with its type",
                          **evidence)


def schema_drift(store: PostgresStore, entity: Entity) -> Verdict:
    if not store.carries(entity):
        return Verdict.passed(f"{store.name} does not carry {entity.name}")
    return drift_verdict(store.name, entity, store.schema_drift(entity))


def rls_verdict(store: str, entity: Entity, live: LiveTable | None, exposed: Collection[str]) -> Verdict:
    evidence = {"schema": live.schema if live else None, "exposed_schemas": sorted(exposed)}
    if live is None:
        return Verdict.passed(f"{entity.name} has no table in {store} yet", **evidence)
    table = f"{live.schema}.{live.name}"
    if live.schema not in exposed:
        return Verdict.passed(f"{table} in {store} is not in a schema the Data API exposes", **evidence)
    if not live.row_level_security:
        return Verdict.fail(f"{table} in {store} is in the Data API's schema {live.schema} with row-level "
                            f"security off: anyone holding the project's anon key can read and write it "
                            f"(`alter table {table} enable row level security`, and add the policies the app "
                            "needs)", **evidence)
    return Verdict.passed(f"{table} in {store} has row-level security on", **evidence)


def row_level_security(store: PostgresStore, entity: Entity,
                       exposed: Collection[str] = DATA_API_SCHEMAS) -> Verdict:
    if not store.carries(entity):
        return Verdict.passed(f"{store.name} does not carry {entity.name}")
    return rls_verdict(store.name, entity, store.live_table(entity), exposed)
