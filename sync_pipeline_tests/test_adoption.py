"""Adopting stores that already hold records (issue 11, part 5): the matching by natural key and the choice
of winner as direct calls; then two real Postgres stores holding the same 1,000 people under different ids,
and the threshold that waits for the operator's confirmation, through the pipeline and through Dagster."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from sync_pipeline import pipeline
from sync_pipeline.planning import plan_sync
from sync_pipeline.commands.sync import confirm_config
from sync_pipeline.defs.resources import SyncSettingsResource
from sync_pipeline.engine.adoption import (
    AdoptionRefused,
    HubRecord,
    StoreRecord,
    Winner,
    match,
    refusal,
    winner,
)
from sync_pipeline.model.entities import entity
from sync_pipeline.settings import DEFAULTS
from sync_pipeline_tests.helpers import SETTINGS, sync_once
from sync_pipeline_tests.stores.postgres.conftest import mapped  # noqa: F401 - the fixture, used below
from sync_pipeline_tests.stores.postgres.mapped import run_sql

PEOPLE = entity("people")
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _hub(record_id: str, email: str, first_name: str = "Ada", at: datetime = T0,
         linked: str | None = None) -> HubRecord:
    data = {"email": email, "first_name": first_name}
    return HubRecord(record_id, 3, f"hash-{record_id}", data, at, linked)


def _store(store_id: str, email: str | None, first_name: str = "Ada",
           at: datetime | None = T0) -> StoreRecord:
    return StoreRecord(store_id, {"email": email, "first_name": first_name}, at)


# -- the pure rules ----------------------------------------------------------------------------------------


def test_winner_follows_the_policy_and_most_recent_keeps_the_hub_on_a_tie_or_an_unknown_time():
    later, earlier = T0 + timedelta(hours=1), T0 - timedelta(hours=1)
    assert winner("this_store", earlier, T0) is Winner.STORE
    assert winner("others", later, T0) is Winner.OTHERS
    assert winner("most_recent", later, T0) is Winner.STORE
    assert winner("most_recent", earlier, T0) is Winner.OTHERS
    assert winner("most_recent", T0, T0) is Winner.OTHERS
    assert winner("most_recent", None, T0) is Winner.OTHERS


def test_match_links_by_natural_key_and_says_why_it_could_not():
    hub = {"ada@x.com": [_hub("g-ada", "ada@x.com")],
           "grace@x.com": [_hub("g-grace", "grace@x.com", first_name="Grace")],
           "twin@x.com": [_hub("g-twin1", "twin@x.com"), _hub("g-twin2", "twin@x.com")],
           "taken@x.com": [_hub("g-taken", "taken@x.com", linked="s-other")]}
    records = [_store("s-ada", "ada@x.com"),  # same values
               _store("s-grace", "grace@x.com", first_name="G.", at=T0 + timedelta(days=1)),  # newer here
               _store("s-new", "new@x.com"),
               _store("s-nokey", None),
               _store("s-dup1", "dup@x.com"), _store("s-dup2", "dup@x.com"),
               _store("s-twin", "twin@x.com"),
               _store("s-taken", "taken@x.com")]

    report = match("supabase", "people", "email", records, hub)

    links = {(link.store_record_id, link.record_id, link.winner, link.differing_fields)
             for link in report.links}
    assert links == {("s-ada", "g-ada", Winner.SAME, ()),
                     ("s-grace", "g-grace", Winner.STORE, ("first_name",))}
    assert sorted(report.new) == ["s-new", "s-nokey"]
    why = {u.store_record_id: (u.taken_in, u.reason) for u in report.unmatched}
    assert why["s-nokey"] == (True, "no email: taken in as a new record")
    assert why["s-dup1"][0] is False
    assert "shared by 2 records of supabase (s-dup1, s-dup2)" in why["s-dup1"][1]
    assert why["s-dup2"][0] is False
    assert why["s-twin"][0] is False and "shared by 2 hub records (g-twin1, g-twin2)" in why["s-twin"][1]
    assert why["s-taken"][0] is False and "already linked to supabase record s-other" in why["s-taken"][1]
    assert report.overwrites == 1
    assert report.counts() == {"linked": 2, "new": 2, "unmatched": 4, "overwrites": 1, "store_wins": 1,
                               "others_win": 0}


def test_a_field_the_store_does_not_carry_is_no_difference():
    hub = {"ada@x.com": [HubRecord("g", 1, "h", {"email": "ada@x.com", "first_name": "Ada", "city": "London"},
                                   T0)]}
    record = StoreRecord("s", {"email": "ada@x.com", "first_name": "Ada"}, T0)
    report = match("local_db", "people", "email", [record], hub, "this_store")
    assert [link.winner for link in report.links] == [Winner.SAME]


def test_an_entity_without_natural_key_takes_every_record_in_as_new():
    report = match("local_db", "notes", None, [_store("a", "x@x.com"), _store("b", "x@x.com")], {})
    assert report.new == ["a", "b"] and not report.links
    assert all(u.taken_in and "no natural key" in u.reason for u in report.unmatched)


def test_refusal_counts_the_overwrites_of_every_report_against_the_threshold():
    hub = {f"p{i}@x.com": [_hub(f"g{i}", f"p{i}@x.com")] for i in range(5)}
    report = match("supabase", "people", "email",
                   [_store(f"s{i}", f"p{i}@x.com", first_name="Other") for i in range(5)], hub, "others")
    assert refusal([report], threshold=5) is None
    reason = refusal([report], threshold=4)
    assert reason is not None and "overwrite 5 records (5 people in supabase)" in reason
    assert "sync-pipeline sync --confirm" in reason


# -- two real stores ---------------------------------------------------------------------------------------


def _hold_people(dsn: str, people: list[dict[str, object]]) -> None:
    """Rows the store held before the sync was installed: written with the triggers off, so no change log
    row records them (session_replication_role = replica skips ordinary triggers)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("set session_replication_role = replica")
        with conn.cursor() as cur:
            cur.executemany("""insert into public.people (id, first_name, last_name, email, job_title)
                               values (%(id)s, %(first_name)s, %(last_name)s, %(email)s, %(job_title)s)""",
                            people)


def _people(n: int, **overrides: object) -> list[dict[str, object]]:
    return [{"id": str(uuid.uuid4()), "first_name": f"First{i}", "last_name": f"Last{i}",
             "email": f"person{i}@example.com", "job_title": "Engineer", **overrides}
            for i in range(n)]


def _by_email(store) -> dict[str, dict[str, object]]:
    return {row["email"]: row for row in store.rows(PEOPLE)}


def _values_by_email(store) -> dict[str, dict[str, object]]:
    """Each row's values without its id (the stores hold the same people under different ids)."""
    return {e: {k: v for k, v in row.items() if k != "id"} for e, row in _by_email(store).items()}


def _own_ids(dsn: str) -> set[str]:
    """The ids of the store's rows as the store holds them."""
    with psycopg.connect(dsn) as conn:
        return {str(i) for (i,) in conn.execute("select id from public.people")}


def _live_golden(hub) -> dict[str, dict[str, object]]:
    return {rid: data for rid, (_, data) in hub.golden_snapshot("people").items() if data is not None}


def test_two_stores_holding_the_same_thousand_people_end_with_a_thousand_golden_records(topology):
    t = topology
    local = _people(1000)
    supabase = [{**p, "id": str(uuid.uuid4())} for p in local]
    for p in supabase[:50]:
        p["job_title"] = "Director"
    _hold_people(t.local_dsn, local)
    _hold_people(t.supabase_dsn, supabase)
    # Supabase's values win where they differ (the policy's other choices are tested below).
    settings = replace(SETTINGS, adopt_wins={"supabase": "this_store"})

    stats = sync_once(t.hub, [t.local_db, t.supabase], settings)

    golden = _live_golden(t.hub)
    assert len(golden) == 1000
    assert {d["email"] for d in golden.values()} == {p["email"] for p in local}
    local_report = stats[("capture", "local_db", "people")].adoption
    supabase_report = stats[("capture", "supabase", "people")].adoption
    assert (len(local_report.new), len(local_report.links)) == (1000, 0)
    assert (len(supabase_report.links), len(supabase_report.new), supabase_report.unmatched) == (1000, 0, [])
    assert supabase_report.overwrites == 50
    # The report names every link: Supabase's id, the canonical id it joined, whose values won.
    with psycopg.connect(t.local_dsn) as conn:
        linked = dict(conn.execute("""select record_id, detail from sync.record_outcomes
                                      where store = 'supabase' and entity = 'people' and outcome = 'linked'"""
                                   ).fetchall())
    local_id = {p["email"]: p["id"] for p in local}
    assert len(linked) == 1000
    first, same = supabase[0], supabase[99]
    assert linked[local_id[first["email"]]] == (
        f"supabase record {first['id']} linked by {first['email']!r}; this store's values win (job_title)")
    assert linked[local_id[same["email"]]].endswith("same values")
    # Each store keeps its own ids, and both now hold the winning values.
    local_rows, supabase_rows = _by_email(t.local_db), _by_email(t.supabase)
    assert len(local_rows) == len(supabase_rows) == 1000
    assert _own_ids(t.supabase_dsn) == {p["id"] for p in supabase}
    assert _own_ids(t.local_dsn) == {p["id"] for p in local}
    assert all(local_rows[p["email"]]["job_title"] == "Director" for p in supabase[:50])
    assert _values_by_email(t.local_db) == _values_by_email(t.supabase)

    # Linked, later changes flow both ways through the id map, and a further run finds nothing to adopt.
    edited_there, edited_here = supabase[60], local[61]
    with psycopg.connect(t.supabase_dsn) as conn:
        conn.execute("update public.people set city = 'Paris' where id = %s", (edited_there["id"],))
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("update public.people set city = 'Rome' where id = %s", (edited_here["id"],))
    again = sync_once(t.hub, [t.local_db, t.supabase], settings)
    assert again[("capture", "supabase", "people")].adoption is None
    assert again[("resolve", "people")].conflicts == 0
    assert _by_email(t.local_db)[edited_there["email"]]["city"] == "Paris"
    assert _by_email(t.supabase)[edited_here["email"]]["city"] == "Rome"
    assert len(_live_golden(t.hub)) == 1000 and len(t.supabase.rows(PEOPLE)) == 1000


@pytest.mark.parametrize("policy, job_title", [("this_store", "Director"), ("others", "Engineer")])
def test_adopt_wins_says_whose_values_win(topology, policy, job_title):
    t = topology
    local = _people(3)
    _hold_people(t.local_dsn, local)
    _hold_people(t.supabase_dsn, [{**p, "id": str(uuid.uuid4()), "job_title": "Director"} for p in local])

    stats = sync_once(t.hub, [t.local_db, t.supabase], replace(SETTINGS, adopt_wins={"supabase": policy}))

    report = stats[("capture", "supabase", "people")].adoption
    assert {link.winner for link in report.links} == {Winner(policy)}
    assert {r["job_title"] for r in [*t.local_db.rows(PEOPLE), *t.supabase.rows(PEOPLE)]} == {job_title}
    assert len(_live_golden(t.hub)) == 3


def test_a_record_that_cannot_be_linked_is_kept_out_with_its_reason(topology):
    t = topology
    _hold_people(t.local_dsn, _people(1))
    twins = _people(2, email="person0@example.com")
    _hold_people(t.supabase_dsn, twins)

    stats = sync_once(t.hub, [t.local_db, t.supabase])

    report = stats[("capture", "supabase", "people")].adoption
    assert not report.links and {u.store_record_id for u in report.unmatched} == {p["id"] for p in twins}
    assert len(_live_golden(t.hub)) == 1
    open_reasons = {q["record_id"]: q["reason"] for q in t.hub.open_quarantine_rows("supabase", "people")}
    assert set(open_reasons) == {p["id"] for p in twins}
    assert all("is shared by 2 records of supabase" in reason for reason in open_reasons.values())


def test_adoption_over_the_threshold_writes_nothing_until_confirmed(topology):
    t = topology
    local = _people(5)
    _hold_people(t.local_dsn, local)
    _hold_people(t.supabase_dsn, [{**p, "id": str(uuid.uuid4()), "job_title": "Director"} for p in local])
    strict = replace(SETTINGS, adoption_confirm_threshold=4, adopt_wins={"supabase": "this_store"})
    pipeline.capture(t.hub, t.local_db, PEOPLE, "r1", strict)
    pipeline.resolve(t.hub, PEOPLE, "r1", strict)

    with pytest.raises(AdoptionRefused, match="overwrite 5 records .* threshold of 4"):
        pipeline.capture(t.hub, t.supabase, PEOPLE, "r1", strict)

    assert t.hub.get_cursor("supabase", "people") is None  # tried again next run
    assert {d["job_title"] for d in _live_golden(t.hub).values()} == {"Engineer"}
    assert t.hub.record_ids_for("supabase", "people", [str(r["id"]) for r in t.supabase.rows(PEOPLE)]) == {}

    stats = pipeline.capture(t.hub, t.supabase, PEOPLE, "r2", replace(strict, confirm_adoption=True))
    assert stats.adoption is not None and len(stats.adoption.links) == 5
    assert {d["job_title"] for d in _live_golden(t.hub).values()} == {"Director"}


def test_the_plan_shows_the_adoption_and_that_it_waits_for_confirmation_writing_nothing(topology):
    t = topology
    supabase = _people(5)
    _hold_people(t.supabase_dsn, supabase)
    local = [{**p, "id": str(uuid.uuid4()), "job_title": "Director"} for p in supabase]
    _hold_people(t.local_dsn, local)
    strict = replace(SETTINGS, adoption_confirm_threshold=4, adopt_wins={"local_db": "this_store"})

    plan = plan_sync(t.hub, [t.supabase, t.local_db], strict)  # the registry's order: Supabase first

    assert plan.failures == []
    adopted = {(r["store"], r["entity"]): r for r in plan.adoption_rows()}
    assert adopted[("supabase", "people")]["new"] == 5
    local_adoption = adopted[("local_db", "people")]
    assert (local_adoption["linked"], local_adoption["overwrites"]) == (5, 5)
    assert sorted(link["detail"].split(" linked")[0] for link in plan.links) == sorted(
        f"local_db record {p['id']}" for p in local)
    assert plan.counts[("supabase", "people")]["update"] == 5  # the local values would overwrite them
    assert plan.confirmation_needed is not None and "threshold of 4" in plan.confirmation_needed
    assert t.hub.golden_snapshot("people") == {}
    assert t.hub.get_cursor("local_db", "people") is None and t.hub.get_cursor("supabase", "people") is None


def test_the_sync_job_refuses_an_adoption_over_the_threshold_until_the_run_config_confirms_it(topology,
                                                                                             four_stores):
    t = topology
    local = _people(5)
    _hold_people(t.local_dsn, local)
    supabase = [{**p, "id": str(uuid.uuid4()), "job_title": "Director"} for p in local]
    _hold_people(t.supabase_dsn, supabase)
    pipeline.capture(t.hub, t.local_db, PEOPLE, "setup", SETTINGS)  # the hub holds the local people first
    pipeline.resolve(t.hub, PEOPLE, "setup", SETTINGS)
    defs = four_stores.without("sync_settings", SyncSettingsResource(adoption_confirm_threshold=4))
    job = defs.resolve_job_def("sync_job")

    refused = job.execute_in_process(raise_on_error=False)

    held_back = [e for e in refused.get_step_failure_events()] + [
        m for m in refused.get_asset_materialization_events()
        if m.asset_key.path[0] == "supabase" and m.materialization.metadata.get("status")
        and m.materialization.metadata["status"].value == "failed"]
    assert held_back, "the Supabase steps must fail while the adoption waits"
    errors = {(e["error_class"], e["operation"]) for e in t.hub.recent_errors("supabase", "people", 20)}
    assert ("AdoptionRefused", "capture") in errors and ("AdoptionPending", "publish") in errors
    assert {r["job_title"] for r in t.supabase.rows(PEOPLE)} == {"Director"}  # untouched, not duplicated
    assert len(t.supabase.rows(PEOPLE)) == 5

    confirmed = job.execute_in_process(run_config=confirm_config(True), raise_on_error=False)

    [adopted] = [m.materialization.metadata for m in confirmed.get_asset_materialization_events()
                 if m.asset_key.to_user_string() == "supabase/people_changes"]
    assert (adopted["adoption_linked"].value, adopted["adoption_overwrites"].value) == (5, 5)
    assert t.hub.recent_errors("supabase", "people", 20) == []
    assert len(_live_golden(t.hub)) == 5
    assert {r["job_title"] for r in t.local_db.rows(PEOPLE)} == {"Director"}
    assert _own_ids(t.supabase_dsn) == {p["id"] for p in supabase}


# -- the commands --------------------------------------------------------------------------------------------

SCRIPT = str(Path(sys.executable).with_name("sync-pipeline"))
# Each command imports Dagster and the sync runs the gated job: minutes on a loaded machine.
SUBPROCESS_SECONDS = 600


def _command(topology, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The console script in a new terminal pointed at the test's databases (Twenty and BigQuery unset)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "SYNC_HUB_DATABASE_URL": topology.local_dsn, "LOCAL_DATABASE_URL": topology.local_dsn,
           "SUPABASE_DATABASE_URL": topology.supabase_dsn, "SUPABASE_SSLMODE": "disable"}
    return subprocess.run([SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=SUBPROCESS_SECONDS)


@pytest.mark.timeout(3 * SUBPROCESS_SECONDS)
def test_plan_then_sync_then_sync_confirm_from_the_command_line(topology, tmp_path):
    t = topology
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'elsewhere'\n")  # no project .env is read
    over = DEFAULTS.adoption_confirm_threshold + 1
    local = _people(over)
    _hold_people(t.local_dsn, local)
    _hold_people(t.supabase_dsn, [{**p, "id": str(uuid.uuid4()), "job_title": "Director"} for p in local])

    plan = _command(t, tmp_path, "plan")

    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "Stores it would adopt" in plan.stdout and "linked by 'person" in plan.stdout
    refusal_line = f"The sync will refuse to run until confirmed: adopting would overwrite {over} records"
    assert refusal_line in plan.stdout
    assert t.hub.golden_snapshot("people") == {}

    refused = _command(t, tmp_path, "sync")

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert len(_live_golden(t.hub)) == over  # the first store adopted; the second waits
    assert any(e["error_class"] == "AdoptionRefused"
               for store in ("local_db", "supabase") for e in t.hub.recent_errors(store, "people", 20))

    confirmed = _command(t, tmp_path, "sync", "--confirm")

    assert "succeeded" in confirmed.stdout, confirmed.stdout + confirmed.stderr
    assert len(_live_golden(t.hub)) == over
    assert len(t.local_db.rows(PEOPLE)) == len(t.supabase.rows(PEOPLE)) == over
    assert _values_by_email(t.local_db) == _values_by_email(t.supabase)


# -- app schemas of their own ------------------------------------------------------------------------------


def test_app_tables_holding_the_same_people_before_install_are_adopted_under_their_own_ids(mapped):
    """The case the issue starts from: a back office (bigint identity ids) and a Supabase app (text ids)
    that hold the same people, under other table and column names, before the sync is installed."""
    m = mapped
    people = 200
    run_sql(m.local_dsn, """insert into crm.contacts (given_name, family_name, email_address, title)
                            select 'First' || n, 'Last' || n, 'person' || n || '@example.com', 'Engineer'
                            from generate_series(1, %s) n""", (people,))
    run_sql(m.supabase_dsn, """insert into public.members (first, last, mail, job)
                               select 'First' || n, 'Last' || n, 'person' || n || '@example.com',
                                      case when n <= 20 then 'Director' else 'Engineer' end
                               from generate_series(1, %s) n""", (people,))
    m.local_db.install()
    m.supabase.install()
    settings = replace(SETTINGS, adopt_wins={"local_db": "others", "supabase": "others"})

    stats = sync_once(m.hub, m.stores, settings)  # Supabase first, then the local DB

    assert len(_live_golden(m.hub)) == people
    report = stats[("capture", "local_db", "people")].adoption
    assert (len(report.links), report.new, report.unmatched, report.overwrites) == (people, [], [], 20)
    assert run_sql(m.local_dsn, "select count(*) as n from crm.contacts") == [{"n": people}]
    assert run_sql(m.supabase_dsn, "select count(*) as n from public.members") == [{"n": people}]
    # The hub's (Supabase's) values won: the back office now holds them, under its own ids.
    titles = run_sql(m.local_dsn,
                     "select title, count(*) as n from crm.contacts group by title order by title")
    assert titles == [{"title": "Director", "n": 20}, {"title": "Engineer", "n": people - 20}]

    [member] = run_sql(m.supabase_dsn, "select id from public.members where mail = 'person7@example.com'")
    run_sql(m.supabase_dsn, "update public.members set town = 'Paris' where id = %s", (member["id"],))
    sync_once(m.hub, m.stores, settings)
    city = run_sql(m.local_dsn, "select city from crm.contacts where email_address = 'person7@example.com'")
    assert city == [{"city": "Paris"}]
