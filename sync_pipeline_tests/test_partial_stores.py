"""Stores that carry only some entities and fields (issue 11): Supabase keeps people without `phone`, Twenty
keeps no opportunities. After a sync, reconciliation re-sends nothing and the consistency checks pass; an
edit of `phone` elsewhere never reaches Supabase and is not counted as drift there."""

from __future__ import annotations

import copy
import os
import uuid
from pathlib import Path
from typing import Iterator, Sequence

import psycopg
import pytest
import yaml  # type: ignore[import-untyped]

from sync_pipeline import pipeline
from sync_pipeline.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, SyncConfig, active_config
from sync_pipeline.model.entities import ENTITIES, entity
from sync_pipeline.safety.checks import Status, consistency
from sync_pipeline.stores.base import ReconcilableStore, carried_fields
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.twenty.mapping import _active_mapping
from sync_pipeline_tests.helpers import SETTINGS, insert_person

PEOPLE, OPPORTUNITIES = entity("people"), entity("opportunities")


def _reload_active_config() -> None:
    active_config.cache_clear()
    _active_mapping.cache_clear()


@pytest.fixture
def partial_config(tmp_path: Path) -> Iterator[SyncConfig]:
    """The shipped configuration, but Supabase's people without `phone` (its column left alone) and Twenty
    without opportunities, made the process's active configuration for the test."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    stores = data["stores"]
    del stores["twenty"]["entities"]["opportunities"]
    stores["supabase"], stores["local_db"] = copy.deepcopy(stores["supabase"]), copy.deepcopy(stores["local_db"])
    people = stores["supabase"]["entities"]["people"]
    del people["columns"]["phone"]
    people["ignore_columns"] = [*people.get("ignore_columns", []), "phone"]
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    before = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(path)
    _reload_active_config()
    try:
        yield active_config()
    finally:
        if before is None:
            del os.environ[CONFIG_ENV]
        else:
            os.environ[CONFIG_ENV] = before
        _reload_active_config()


def _sync(hub, stores: Sequence[ReconcilableStore]) -> None:
    """One run over every store and entity, as the jobs run it: a store given none of an entity by the
    configuration captures and publishes nothing of it (and does not fail)."""
    for e in ENTITIES:
        for s in stores:
            captured = pipeline.capture(hub, s, e, "test-run", SETTINGS)  # type: ignore[arg-type]
            if carried_fields(s, e) is None:
                assert (captured.batches, captured.read) == (0, 0)
        pipeline.resolve(hub, e, "test-run", SETTINGS)
        for s in stores:
            stats = pipeline.publish(hub, s, e, "test-run", SETTINGS)  # type: ignore[arg-type]
            assert stats.errors == 0, stats.error_messages
            if carried_fields(s, e) is None:
                assert (stats.read, stats.applied) == (0, 0)


def _assert_converged(hub, stores: Sequence[ReconcilableStore]) -> None:
    for e in ENTITIES:
        for s in stores:
            stats = pipeline.reconcile(hub, s, e, "reconcile-run", SETTINGS)
            assert (stats.resent, stats.new_in_store, stats.deleted) == (0, 0, 0), (s.name, e.name, stats)
            verdict = consistency(s, e, hub)
            assert verdict.status is Status.PASS, (s.name, e.name, verdict.reason)


def test_partial_stores_converge_and_an_uncarried_field_is_no_drift(topology, twenty_store, twenty_client,
                                                                   partial_config: SyncConfig) -> None:
    t = topology
    supabase = PostgresStore("supabase", t.supabase_dsn, id_map=t.hub.id_map("supabase"), config=partial_config)
    supabase.install()
    stores: list[ReconcilableStore] = [twenty_store, supabase, t.local_db]
    assert "phone" not in (carried_fields(supabase, PEOPLE) or ())
    assert carried_fields(supabase, PEOPLE) == tuple(f for f in PEOPLE.field_names if f != "phone")
    assert carried_fields(twenty_store, OPPORTUNITIES) is None

    company_id, deal_id = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("insert into companies (id, name, domain_name, ideal_customer_profile) "
                     "values (%s, 'Acme', 'https://acme.com', false)", (company_id,))
        person_id = insert_person(conn, first_name="Grace", email="grace@navy.mil", phone="+1 555 0100",
                                  company_id=company_id)
        conn.execute("insert into opportunities (id, name, stage, company_id, point_of_contact_id) "
                     "values (%s, 'Big deal', 'NEW', %s, %s)", (deal_id, company_id, person_id))
    _sync(t.hub, stores)

    assert "555 0100" in str(twenty_client.get("people", person_id)["phones"])  # Twenty carries the phone
    assert [r["id"] for r in supabase.rows(OPPORTUNITIES)] == [deal_id]
    assert list(twenty_client.list("opportunities")) == []  # Twenty holds no opportunities
    _assert_converged(t.hub, stores)

    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("update people set phone = '+1 555 0199', city = 'Arlington' where id = %s", (person_id,))
    _sync(t.hub, stores)

    golden = t.hub.golden_snapshot("people")[person_id][1]
    assert golden is not None and (golden["phone"], golden["city"]) == ("+1 555 0199", "Arlington")
    [member] = supabase.rows(PEOPLE)
    assert "phone" not in member and member["city"] == "Arlington"  # the edit came, the phone did not
    assert "555 0199" in str(twenty_client.get("people", person_id)["phones"])
    with psycopg.connect(t.supabase_dsn) as conn:
        row = conn.execute("select phone from people where id = %s", (person_id,)).fetchone()
    assert row == (None,)  # the column the configuration leaves out is never written
    _assert_converged(t.hub, stores)
