"""Row-level security: a synced table in a schema Supabase's Data API exposes, with RLS off, is open to
anyone holding the project's anon key. The check FAILS on it, and passes on the sandbox's tables after
install (which creates them with RLS on and no policy)."""

from __future__ import annotations

from sync_pipeline.model.entities import ENTITIES, entity
from sync_pipeline.safety import schema_checks
from sync_pipeline.safety.checks import Status
from sync_pipeline_tests.stores.postgres.mapped import Mapped, run_sql

PEOPLE, COMPANIES = entity("people"), entity("companies")


def test_the_sandbox_tables_pass_after_install_and_fail_once_rls_is_off(topology) -> None:
    t = topology  # the sandbox's schema, installed: tables created by install
    for e in ENTITIES:
        verdict = schema_checks.row_level_security(t.supabase, e)
        assert verdict.status is Status.PASS, verdict.reason
    assert run_sql(t.supabase_dsn, "select count(*) as n from pg_policy") == [{"n": 0}]

    run_sql(t.supabase_dsn, "alter table public.people disable row level security")
    verdict = schema_checks.row_level_security(t.supabase, PEOPLE)
    assert verdict.status is Status.FAIL
    assert verdict.reason.startswith("public.people in supabase is in the Data API's schema public with "
                                     "row-level security off")
    t.supabase.install()  # the sandbox's tables are the sync's: install turns RLS back on
    assert schema_checks.row_level_security(t.supabase, PEOPLE).status is Status.PASS


def test_an_app_table_with_rls_off_fails_and_install_leaves_it_to_the_app(mapped: Mapped) -> None:
    m = mapped
    run_sql(m.supabase_dsn, "alter table public.organisations disable row level security")
    m.supabase.install()
    verdict = schema_checks.row_level_security(m.supabase, COMPANIES)
    assert verdict.status is Status.FAIL and "public.organisations" in verdict.reason
    assert schema_checks.row_level_security(m.supabase, PEOPLE).status is Status.PASS


def test_only_the_exposed_schemas_count(mapped: Mapped) -> None:
    m = mapped  # the back office's crm schema, RLS off, is not served by a Data API by default...
    assert schema_checks.row_level_security(m.local_db, PEOPLE).status is Status.PASS
    # ...but is when the project exposes it
    verdict = schema_checks.row_level_security(m.local_db, PEOPLE, exposed=("public", "crm"))
    assert verdict.status is Status.FAIL and verdict.reason.startswith("crm.contacts in local_db")
