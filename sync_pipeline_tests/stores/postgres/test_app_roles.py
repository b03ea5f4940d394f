"""The application's own roles keep writing their tables after install, and their writes are captured,
although they are granted nothing in the sync's schema (as Supabase's `authenticated` role is not). On the
local DB: the Supabase tables the sandbox creates have row-level security on and no policy."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from sync_pipeline import pipeline
from sync_pipeline.model.entities import entity
from sync_pipeline_tests.helpers import SETTINGS

PEOPLE = entity("people")


def test_a_role_granted_only_the_app_table_writes_it_and_is_captured(topology):
    role = f"app_user_{uuid.uuid4().hex[:8]}"
    person = str(uuid.uuid4())
    with psycopg.connect(topology.local_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant usage on schema public to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant select, insert, update, delete on public.people to {}").format(
            sql.Identifier(role)))
    with psycopg.connect(topology.local_dsn) as conn:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        conn.execute("insert into public.people (id, first_name, email) values (%s, 'Grace', 'grace@example.com')",
                     (person,))
        conn.execute("update public.people set city = 'Arlington' where id = %s", (person,))
        denied = conn.execute("select has_schema_privilege(current_user, 'sync_cdc', 'usage') as usage").fetchone()
    assert denied == (False,)  # nothing granted in the sync's schema

    stats = pipeline.capture(topology.hub, topology.local_db, PEOPLE, "app-role", SETTINGS)
    assert stats.read == 2 and stats.enqueued == 2
    pipeline.resolve(topology.hub, PEOPLE, "app-role", SETTINGS)
    pipeline.publish(topology.hub, topology.supabase, PEOPLE, "app-role", SETTINGS)
    assert [(p["first_name"], p["city"]) for p in topology.supabase.rows(PEOPLE)] == [("Grace", "Arlington")]
