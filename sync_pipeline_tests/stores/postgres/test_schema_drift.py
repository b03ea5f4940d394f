"""Schema drift: a configured column renamed or retyped in a store blocks that store (its check FAILS naming
store, table and column; its capture and publish refuse to run) while the other store syncs on; a column
nobody mapped is a WARN; fixing the table lets the store catch up."""

from __future__ import annotations

import pytest

from sync_pipeline import pipeline
from sync_pipeline.model.entities import entity
from sync_pipeline.safety import schema_checks
from sync_pipeline.safety.checks import Status
from sync_pipeline.stores.postgres.drift import SchemaDrift
from sync_pipeline_tests.helpers import SETTINGS, sync_once
from sync_pipeline_tests.stores.postgres.mapped import Mapped, new_email, run_sql

PEOPLE = entity("people")


@pytest.fixture
def installed(mapped: Mapped) -> Mapped:
    mapped.local_db.install()
    mapped.supabase.install()
    return mapped


def test_a_renamed_column_fails_naming_store_table_and_column_and_holds_back_that_store_only(
        installed: Mapped) -> None:
    m = installed
    run_sql(m.local_dsn, "alter table crm.contacts rename column email_address to email")
    verdict = schema_checks.schema_drift(m.local_db, PEOPLE)
    assert verdict.status is Status.FAIL
    assert "local_db table crm.contacts (people): column email_address is missing" in verdict.reason
    assert verdict.metadata["blocking"] == ["local_db table crm.contacts (people): column email_address is missing"]
    # the renamed column is also one nobody mapped: named as such in the evidence
    assert verdict.metadata["unmapped_columns"] == ["email"]

    run_sql(m.supabase_dsn, "insert into public.members (first, mail) values ('Bob', %s)", (new_email(),))
    with pytest.raises(SchemaDrift, match="column email_address is missing"):
        pipeline.capture(m.hub, m.local_db, PEOPLE, "run", SETTINGS)
    assert pipeline.capture(m.hub, m.supabase, PEOPLE, "run", SETTINGS).enqueued == 1
    pipeline.resolve(m.hub, PEOPLE, "run", SETTINGS)
    published = pipeline.publish(m.hub, m.local_db, PEOPLE, "run", SETTINGS)
    assert published.applied == 0 and published.errors == 1
    assert "column email_address is missing" in published.error_messages[0]
    assert run_sql(m.local_dsn, "select given_name from crm.contacts") == []
    assert schema_checks.schema_drift(m.supabase, PEOPLE).status is Status.WARN  # avatar_url; not held back

    # fixed at the source, the store catches up
    run_sql(m.local_dsn, "alter table crm.contacts rename column email to email_address")
    assert schema_checks.schema_drift(m.local_db, PEOPLE).status is Status.PASS
    sync_once(m.hub, m.stores)
    assert run_sql(m.local_dsn, "select given_name from crm.contacts") == [{"given_name": "Bob"}]


def test_a_changed_type_fails_and_an_unmapped_column_warns(installed: Mapped) -> None:
    m = installed
    run_sql(m.supabase_dsn, "alter table public.members alter column town type integer using null")
    verdict = schema_checks.schema_drift(m.supabase, PEOPLE)
    assert verdict.status is Status.FAIL
    assert "supabase table public.members (people): column town is integer, the sync writes text" in verdict.reason

    assert schema_checks.schema_drift(m.local_db, PEOPLE).status is Status.PASS  # internal_notes is ignored
    run_sql(m.local_dsn, "alter table crm.contacts add column nickname text")
    warned = schema_checks.schema_drift(m.local_db, PEOPLE)
    assert warned.status is Status.WARN and warned.metadata["unmapped_columns"] == ["nickname"]
    assert warned.reason.startswith("local_db table crm.contacts (people): column nickname is neither mapped")
    # a narrower type that holds the values (varchar, integer) is no drift; ignore_columns are not reported
    run_sql(m.local_dsn, "alter table crm.contacts alter column city type varchar(80)")
    assert schema_checks.schema_drift(m.local_db, PEOPLE).metadata == {"blocking": [],
                                                                       "unmapped_columns": ["nickname"]}
