"""Adopting a store page by page (issue 13: a first sync's memory bounded by a page, not by the store): the
keyset listing of a store's ids, then an adoption of more records than a page that counts its overwrites
across every page before writing anything, takes every record in, and keeps out the records that share a
natural key value from pages apart, each naming the other."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from sync_pipeline import pipeline
from sync_pipeline.engine.adoption import AdoptionRefused
from sync_pipeline.model.entities import entity
from sync_pipeline_tests.helpers import SETTINGS
from sync_pipeline_tests.stores.postgres.conftest import mapped  # noqa: F401 - the fixture, used below
from sync_pipeline_tests.stores.postgres.mapped import run_sql
from sync_pipeline_tests.test_adoption import _hold_people, _live_golden, _people

PEOPLE = entity("people")
PAGE = 50
# The two records sharing an email, at the two ends of the store's id order: the first and the last page.
FIRST, LAST = "00000000-0000-4000-8000-000000000000", "ffffffff-ffff-4fff-bfff-ffffffffffff"


def test_a_store_lists_its_ids_by_keyset_pages_in_the_id_columns_own_order(mapped):
    m = mapped
    run_sql(m.local_dsn, """insert into crm.contacts (given_name, family_name, email_address, title)
                            select 'First' || n, 'Last' || n, 'p' || n || '@example.com', 'Engineer'
                            from generate_series(1, 25) n""")
    pages, after = [], None
    while ids := m.local_db.store_ids(PEOPLE, after, 10):
        pages.append(ids)
        after = ids[-1]

    assert pages == [[str(i) for i in range(1, 11)], [str(i) for i in range(11, 21)],
                     [str(i) for i in range(21, 26)]]  # bigint order: "10" comes after "9"


def test_an_adoption_of_many_pages_counts_every_overwrite_first_then_takes_every_record_in(topology):
    t = topology
    local = _people(200)
    _hold_people(t.local_dsn, local)
    pipeline.capture(t.hub, t.local_db, PEOPLE, "setup", SETTINGS)
    pipeline.resolve(t.hub, PEOPLE, "setup", SETTINGS)
    # Supabase holds 199 of the local people with another job title, 50 people of its own, and two records
    # sharing the email of the first local person, one on the first page and one on the last.
    matched = [{**p, "id": str(uuid.uuid4()), "job_title": "Director"} for p in local[1:]]
    own = [{**p, "id": str(uuid.uuid4()), "email": f"own{i}@example.com"} for i, p in enumerate(_people(50))]
    twins = [{**local[0], "id": FIRST}, {**local[0], "id": LAST, "job_title": "Director"}]
    _hold_people(t.supabase_dsn, [*matched, *own, *twins])
    strict = replace(SETTINGS, adoption_confirm_threshold=198, adopt_wins={"supabase": "this_store"})

    # The twins' pages alone would link each to the first local person: shared, neither counts.
    with pytest.raises(AdoptionRefused, match="overwrite 199 records .* threshold of 198"):
        pipeline.adopt(t.hub, t.supabase, PEOPLE, "r1", strict, page=PAGE)

    assert {d["job_title"] for d in _live_golden(t.hub).values()} == {"Engineer"}
    assert len(_live_golden(t.hub)) == 200
    assert t.hub.record_ids_for("supabase", "people", [p["id"] for p in [*matched, *own, *twins]]) == {}
    assert t.hub.open_quarantine_rows("supabase", "people") == []

    report = pipeline.adopt(t.hub, t.supabase, PEOPLE, "r2", replace(strict, confirm_adoption=True), page=PAGE)

    assert (len(report.links), report.overwrites) == (199, 199)
    assert sorted(report.new) == sorted(p["id"] for p in own)
    assert {u.store_record_id for u in report.unmatched} == {FIRST, LAST}
    golden = _live_golden(t.hub)
    assert len(golden) == 250
    assert sum(d["job_title"] == "Director" for d in golden.values()) == 199
    reasons = {q["record_id"]: q["reason"] for q in t.hub.open_quarantine_rows("supabase", "people")}
    assert set(reasons) == {FIRST, LAST}
    assert all(f"is shared by 2 records of supabase ({FIRST}, {LAST})" in r for r in reasons.values())
    # Every other record is known to the hub now: nothing is left to adopt.
    assert pipeline.adopt(t.hub, t.supabase, PEOPLE, "r3", strict, page=PAGE).counts()["linked"] == 0
